//! DPoP sender-constraining (RFC 9449, FAPI 2.0 §5.3.2.1-5/-10/-12/-13, §5.3.4): proofs
//! at PAR, token and userinfo, authorization-code binding (`dpop_jkt` and the PAR proof),
//! refresh-token binding, `cnf.jkt` tokens of `token_type` DPoP, the resource's scheme
//! rules, the `jti` replay cache and server nonces. Every negative case has its control.
//!
//! The DPoP sandbox client sends no client certificate: its requests reach the mTLS
//! listener without one, which is exactly what a mobile TPP does.

use crate::client_auth::{
    assert_error, auth, flow, form, hand_made_jws, hmac_sha256, reply, server_now,
};
use fapi_conformance::tpp::{random, sign_dpop_proof};
use fapi_conformance::{Pkce, Tpp};
use fapi_jose::{Alg, SigningKey};
use serde_json::{Value, json};
use wekeza_tests::{Reply, TestPlatform, jwt_claims, query_param};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn par_url(tpp: &Tpp) -> String {
    tpp.endpoint("pushed_authorization_request_endpoint")
}

fn token_url(tpp: &Tpp) -> String {
    tpp.endpoint("token_endpoint")
}

fn userinfo_url(tpp: &Tpp) -> String {
    tpp.endpoint("userinfo_endpoint")
}

fn key(tpp: &Tpp) -> &SigningKey {
    tpp.dpop.as_deref().expect("a DPoP client")
}

fn jkt(k: &SigningKey) -> String {
    k.public_jwk().thumbprint_s256().unwrap()
}

fn new_key() -> SigningKey {
    SigningKey::generate(Alg::ES256, "other-dpop-key").unwrap()
}

/// A proof signed by `k` at the server's time: `claims` and `header` entries override the
/// standard ones (`null` removes one).
fn proof_with(
    p: &TestPlatform,
    k: &SigningKey,
    htm: &str,
    htu: &str,
    access_token: Option<&str>,
    header: Value,
    claims: Value,
) -> String {
    let mut c = json!({"jti": random(16), "htm": htm, "htu": htu, "iat": server_now(p)});
    if let Some(t) = access_token {
        c["ath"] = json!(fapi_jose::sha256_b64(t.as_bytes()));
    }
    if let (Some(c), Some(o)) = (c.as_object_mut(), claims.as_object()) {
        for (name, v) in o {
            if v.is_null() {
                c.remove(name);
            } else {
                c.insert(name.clone(), v.clone());
            }
        }
    }
    sign_dpop_proof(k, &header, &c)
}

/// A good proof by `k`.
fn proof(p: &TestPlatform, k: &SigningKey, htm: &str, htu: &str, at: Option<&str>) -> String {
    proof_with(p, k, htm, htu, at, json!({}), json!({}))
}

/// POST `form` with these `DPoP` header values and no client certificate.
async fn post(url: &str, tpp: &Tpp, form: &[(String, String)], proofs: &[String]) -> Reply {
    let mut req = tpp
        .http_no_cert
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(crate::client_auth::encode(form));
    for pr in proofs {
        req = req.header("DPoP", pr);
    }
    reply(req.send().await.unwrap()).await
}

/// The token endpoint, authenticated at the server's time, with these proofs.
async fn token(p: &TestPlatform, tpp: &Tpp, params: &[(&str, &str)], proofs: &[String]) -> Reply {
    post(&token_url(tpp), tpp, &form(p, tpp, params), proofs).await
}

/// client_credentials with these proofs (no customer needed: the cheapest token request).
async fn cc(p: &TestPlatform, tpp: &Tpp, proofs: &[String]) -> Reply {
    token(
        p,
        tpp,
        &[("grant_type", "client_credentials"), ("scope", "accounts")],
        proofs,
    )
    .await
}

/// A pushed authorization request (authenticated at the server's time) with `extra`
/// parameters and these proofs.
async fn par(
    p: &TestPlatform,
    tpp: &Tpp,
    extra: &[(&str, &str)],
    proofs: &[String],
) -> (Reply, Pkce) {
    let pkce = Pkce::new();
    let mut f = auth(p, tpp);
    let mut base = tpp.par_form(&pkce, "st-dpop", "n-dpop", extra);
    base.retain(|(k, _)| !k.starts_with("client_"));
    f.extend(base);
    (post(&par_url(tpp), tpp, &f, proofs).await, pkce)
}

/// The customer approves the pushed request: the code.
async fn approve(p: &TestPlatform, tpp: &Tpp, par: &Reply) -> String {
    assert_eq!(par.status, 201, "PAR: {:?}", par.body);
    let url = tpp.authorize_url(par.str("request_uri").unwrap());
    let otp = p.fresh_otp();
    let c = &p.kit.customer;
    let back = p
        .customer()
        .authorize(&url, &c.username, &c.password, &otp, true)
        .await
        .unwrap();
    query_param(&back, "code").expect("code in redirect")
}

/// Exchange `code` with these proofs.
async fn exchange(
    p: &TestPlatform,
    tpp: &Tpp,
    code: &str,
    pkce: &Pkce,
    proofs: &[String],
) -> Reply {
    token(
        p,
        tpp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &tpp.redirect_uri),
            ("code_verifier", &pkce.verifier),
        ],
        proofs,
    )
    .await
}

/// The whole DPoP flow for the DPoP sandbox client (PAR with a proof): the tokens.
async fn dpop_tokens(p: &TestPlatform) -> Reply {
    let tpp = &p.dpop;
    let k = key(tpp);
    let (r, pkce) = par(p, tpp, &[], &[proof(p, k, "POST", &par_url(tpp), None)]).await;
    let code = approve(p, tpp, &r).await;
    let t = exchange(
        p,
        tpp,
        &code,
        &pkce,
        &[proof(p, k, "POST", &token_url(tpp), None)],
    )
    .await;
    assert_eq!(t.status, 200, "DPoP code exchange: {:?}", t.body);
    t
}

/// GET userinfo with `Authorization: <scheme> <at>` and these proofs, no certificate.
async fn userinfo(tpp: &Tpp, scheme: &str, at: &str, proofs: &[String]) -> Reply {
    tpp.get_dpop_raw(&userinfo_url(tpp), scheme, at, proofs)
        .await
        .unwrap()
}

fn www_authenticate(r: &Reply) -> String {
    r.headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// 401 with this error and a `DPoP` challenge (RFC 9449 §7.1).
#[track_caller]
fn assert_dpop_challenge(r: &Reply, error: &str, what: &str) {
    assert_error(r, 401, error, what);
    let h = www_authenticate(r);
    assert!(
        h.starts_with("DPoP ") && h.contains(&format!("error=\"{error}\"")),
        "{what}: WWW-Authenticate {h:?}"
    );
    assert!(h.contains("algs=\"PS256 ES256 EdDSA\""), "{what}: {h}");
}

fn at_of(r: &Reply) -> String {
    r.str("access_token").unwrap().to_owned()
}

#[track_caller]
fn assert_dpop_bound(r: &Reply, k: &SigningKey, what: &str) {
    assert_eq!(r.status, 200, "{what}: {:?}", r.body);
    assert_eq!(r.str("token_type"), Some("DPoP"), "{what}");
    let c = jwt_claims(r.str("access_token").unwrap());
    assert_eq!(
        c["cnf"],
        json!({"jkt": jkt(k)}),
        "{what}: exactly one binding"
    );
}

// ---------------------------------------------------------------------------------------
// The happy path and the code binding (FAPI 2.0 §5.3.2.1-5/-12)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn dpop_flow_binds_tokens_to_the_proof_key_and_userinfo_takes_the_dpop_scheme() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    assert_eq!(
        tpp.discovery["dpop_signing_alg_values_supported"],
        json!(["PS256", "ES256", "EdDSA"])
    );
    let entry = p
        .kit
        .clients
        .iter()
        .find(|c| c.client_id == "sandbox-tpp-dpop")
        .expect("kit lists the DPoP client");
    assert_eq!(entry.sender_constraint.as_deref(), Some("dpop"));

    let t = dpop_tokens(&p).await;
    assert_dpop_bound(&t, k, "code exchange");
    assert_eq!(tpp.dpop_jkt(), Some(jkt(k)));
    assert!(t.str("refresh_token").is_some() && t.str("id_token").is_some());
    let at = at_of(&t);

    // RFC 9449 §7.1: the DPoP scheme, a proof for this request naming the token (ath).
    let ui = userinfo(
        tpp,
        "DPoP",
        &at,
        &[proof(&p, k, "GET", &userinfo_url(tpp), Some(&at))],
    )
    .await;
    assert_eq!(ui.status, 200, "userinfo: {:?}", ui.body);
    assert!(ui.str("sub").is_some());
    // The scheme name is case-insensitive (RFC 9110 §11.1); POST works too.
    let ui = userinfo(
        tpp,
        "dpop",
        &at,
        &[proof(&p, k, "GET", &userinfo_url(tpp), Some(&at))],
    )
    .await;
    assert_eq!(ui.status, 200, "lower-case scheme: {:?}", ui.body);
    let r = tpp
        .http_no_cert
        .post(userinfo_url(tpp))
        .header("authorization", format!("DPoP {at}"))
        .header("DPoP", proof(&p, k, "POST", &userinfo_url(tpp), Some(&at)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "POST userinfo");

    // Introspection tells a resource server how the token is bound and presented.
    let intro = post(
        &tpp.endpoint("introspection_endpoint"),
        tpp,
        &form(&p, tpp, &[("token", &at)]),
        &[],
    )
    .await;
    assert_eq!(intro.body["active"], true, "{:?}", intro.body);
    assert_eq!(intro.body["token_type"], "DPoP");
    assert_eq!(intro.body["cnf"], json!({"jkt": jkt(k)}));
    // A certificate-bound token still introspects as Bearer with x5t#S256 only.
    let mtls_at = at_of(&flow(&p, &p.pkjwt).await);
    let intro = crate::client_auth::call(
        &p,
        &p.pkjwt,
        "introspection_endpoint",
        &[("token", &mtls_at)],
    )
    .await;
    assert_eq!(intro.body["token_type"], "Bearer");
    assert!(intro.body["cnf"].get("jkt").is_none() && intro.body["cnf"].get("x5t#S256").is_some());
    p.finish().await;
}

#[tokio::test]
async fn tpp_helpers_run_the_dpop_flow_without_a_certificate() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let pkce = Pkce::new();
    let r = tpp.par_dpop(&pkce, "st", "n", &[]).await.unwrap();
    let code = approve(&p, tpp, &r).await;
    let t = tpp.exchange_code_dpop(&code, &pkce).await.unwrap();
    assert_dpop_bound(&t, key(tpp), "exchange_code_dpop");
    let ui = tpp
        .get_with_dpop(&userinfo_url(tpp), &at_of(&t))
        .await
        .unwrap();
    assert_eq!(ui.status, 200, "{:?}", ui.body);
    let rt = t.str("refresh_token").unwrap();
    assert_dpop_bound(
        &tpp.refresh_dpop(rt).await.unwrap(),
        key(tpp),
        "refresh_dpop",
    );
    assert_dpop_bound(
        &tpp.client_credentials_dpop("accounts").await.unwrap(),
        key(tpp),
        "client_credentials_dpop",
    );
    p.finish().await;
}

#[tokio::test]
async fn dpop_jkt_at_par_binds_the_code_and_another_key_cannot_redeem_it() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    // dpop_jkt alone (no proof at PAR, as the suite's happy flow does for client 2).
    let (r, pkce) = par(&p, tpp, &[("dpop_jkt", &jkt(k))], &[]).await;
    let code = approve(&p, tpp, &r).await;
    let t = exchange(
        &p,
        tpp,
        &code,
        &pkce,
        &[proof(&p, k, "POST", &token_url(tpp), None)],
    )
    .await;
    assert_dpop_bound(&t, k, "dpop_jkt of the proof key");

    // The code is bound to another key's thumbprint: the token endpoint refuses it.
    let other = new_key();
    let (r, pkce) = par(&p, tpp, &[("dpop_jkt", &jkt(&other))], &[]).await;
    let code = approve(&p, tpp, &r).await;
    let t = exchange(
        &p,
        tpp,
        &code,
        &pkce,
        &[proof(&p, k, "POST", &token_url(tpp), None)],
    )
    .await;
    assert_error(
        &t,
        400,
        "invalid_grant",
        "code bound by dpop_jkt to another key",
    );

    // A malformed dpop_jkt never makes it to a code.
    let (r, _) = par(&p, tpp, &[("dpop_jkt", "not-a-thumbprint")], &[]).await;
    assert_error(&r, 400, "invalid_request", "malformed dpop_jkt");
    p.finish().await;
}

#[tokio::test]
async fn proof_key_at_token_must_be_the_par_proof_key() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    let other = new_key();
    let (r, pkce) = par(&p, tpp, &[], &[proof(&p, k, "POST", &par_url(tpp), None)]).await;
    let code = approve(&p, tpp, &r).await;
    let t = exchange(
        &p,
        tpp,
        &code,
        &pkce,
        &[proof(&p, &other, "POST", &token_url(tpp), None)],
    )
    .await;
    assert_error(&t, 400, "invalid_grant", "proof by another key than at PAR");
    // Control: the same flow with the PAR key succeeds (see also the happy path).
    let (r, pkce) = par(&p, tpp, &[], &[proof(&p, k, "POST", &par_url(tpp), None)]).await;
    let code = approve(&p, tpp, &r).await;
    let t = exchange(
        &p,
        tpp,
        &code,
        &pkce,
        &[proof(&p, k, "POST", &token_url(tpp), None)],
    )
    .await;
    assert_dpop_bound(&t, k, "same key");
    p.finish().await;
}

#[tokio::test]
async fn par_refuses_dpop_jkt_that_differs_from_the_proof_key() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    let other = new_key();
    let pr = || proof(&p, k, "POST", &par_url(tpp), None);
    let (r, _) = par(&p, tpp, &[("dpop_jkt", &jkt(&other))], &[pr()]).await;
    assert_error(
        &r,
        400,
        "invalid_request",
        "dpop_jkt of another key than the proof",
    );
    let (r, _) = par(&p, tpp, &[("dpop_jkt", &jkt(k))], &[pr()]).await;
    assert_eq!(r.status, 201, "matching dpop_jkt and proof: {:?}", r.body);
    // A broken proof at PAR is refused too, with the DPoP error.
    let bad = proof_with(
        &p,
        k,
        "POST",
        &par_url(tpp),
        None,
        json!({"typ": "JWT"}),
        json!({}),
    );
    let (r, _) = par(&p, tpp, &[], &[bad]).await;
    assert_error(&r, 400, "invalid_dpop_proof", "PAR proof with typ JWT");
    let (r, _) = par(&p, tpp, &[], &[proof(&p, k, "POST", &token_url(tpp), None)]).await;
    assert_error(
        &r,
        400,
        "invalid_dpop_proof",
        "PAR proof for the token endpoint",
    );
    p.finish().await;
}

// ---------------------------------------------------------------------------------------
// Refresh tokens and client credentials
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_token_needs_a_proof_by_the_same_key() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    let rt = dpop_tokens(&p)
        .await
        .str("refresh_token")
        .unwrap()
        .to_owned();
    let params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    let other = new_key();
    let r = token(
        &p,
        tpp,
        &params,
        &[proof(&p, &other, "POST", &token_url(tpp), None)],
    )
    .await;
    assert_error(&r, 400, "invalid_grant", "refresh with another DPoP key");
    let r = token(&p, tpp, &params, &[]).await;
    assert_error(&r, 400, "invalid_dpop_proof", "refresh without a proof");
    let r = token(
        &p,
        tpp,
        &params,
        &[proof(&p, k, "POST", &token_url(tpp), None)],
    )
    .await;
    assert_dpop_bound(&r, k, "refresh with the same key");
    assert_eq!(r.str("refresh_token"), Some(rt.as_str()), "not rotated");
    p.finish().await;
}

#[tokio::test]
async fn client_credentials_of_a_dpop_client_need_a_proof_even_with_a_certificate() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    let r = cc(&p, tpp, &[proof(&p, k, "POST", &token_url(tpp), None)]).await;
    assert_dpop_bound(&r, k, "client_credentials with a proof");
    let r = cc(&p, tpp, &[]).await;
    assert_error(&r, 400, "invalid_dpop_proof", "no proof, no certificate");
    // Its certificate does not stand in for the proof: one sender constraint per client.
    let f = form(
        &p,
        tpp,
        &[("grant_type", "client_credentials"), ("scope", "accounts")],
    );
    let r = tpp.post_form(&token_url(tpp), &f, true).await.unwrap();
    assert_error(
        &r,
        400,
        "invalid_dpop_proof",
        "certificate instead of a proof",
    );
    p.finish().await;
}

#[tokio::test]
async fn certificate_bound_clients_do_not_use_dpop() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.pkjwt;
    let k = new_key();
    // Control: certificate-bound, Bearer, x5t#S256 only.
    let f = form(
        &p,
        tpp,
        &[("grant_type", "client_credentials"), ("scope", "accounts")],
    );
    let r = tpp.post_form(&token_url(tpp), &f, true).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.str("token_type"), Some("Bearer"));
    assert_eq!(
        jwt_claims(&at_of(&r))["cnf"],
        json!({"x5t#S256": tpp.x5t_s256}),
        "exactly one binding"
    );
    // With a proof as well: refused rather than bound twice or silently ignored.
    let f = form(
        &p,
        tpp,
        &[("grant_type", "client_credentials"), ("scope", "accounts")],
    );
    let r = tpp
        .post_form_dpop(
            &token_url(tpp),
            &f,
            Some(&proof(&p, &k, "POST", &token_url(tpp), None)),
            true,
        )
        .await
        .unwrap();
    assert_error(
        &r,
        400,
        "invalid_request",
        "certificate-bound client sending a proof",
    );
    // No DPoP key binding of its codes either.
    let (r, _) = par(&p, tpp, &[("dpop_jkt", &jkt(&k))], &[]).await;
    assert_error(
        &r,
        400,
        "invalid_request",
        "dpop_jkt from a certificate-bound client",
    );
    p.finish().await;
}

// ---------------------------------------------------------------------------------------
// Proof rules at the token endpoint (RFC 9449 §4.3, FAPI 2.0 §5.3.2.1-13, §5.4.1)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_or_mismatched_proofs_are_invalid_dpop_proof() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    let url = token_url(tpp);
    let now = server_now(&p);
    let with = |header: Value, claims: Value| proof_with(&p, k, "POST", &url, None, header, claims);
    let good_claims =
        || json!({"jti": random(16), "htm": "POST", "htu": url, "iat": server_now(&p)});
    let jwk = serde_json::to_value(k.public_jwk()).unwrap();
    let mut private = k.to_private_jwk().unwrap();
    private["kid"] = json!(k.kid());
    let other_port = {
        let mut u = url::Url::parse(&url).unwrap();
        let port = u.port().unwrap();
        u.set_port(Some(port + 1)).unwrap();
        u.to_string()
    };
    let rsa = SigningKey::generate(Alg::PS256, "rs").unwrap();
    let good = with(json!({}), json!({}));
    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no DPoP header", vec![]),
        (
            "two DPoP headers",
            vec![with(json!({}), json!({})), with(json!({}), json!({}))],
        ),
        ("not a JWT", vec!["not-a-jwt".into()]),
        ("two segments", vec![format!("{}.{}", parts[0], parts[1])]),
        (
            "invalid signature",
            vec![format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                &parts[2][..parts[2].len() - 4]
            )],
        ),
        ("no typ", vec![with(json!({"typ": null}), json!({}))]),
        ("typ JWT", vec![with(json!({"typ": "JWT"}), json!({}))]),
        ("no jwk", vec![with(json!({"jwk": null}), json!({}))]),
        (
            "private key in jwk",
            vec![with(json!({"jwk": private}), json!({}))],
        ),
        (
            "jwk of another key",
            vec![with(json!({"jwk": rsa.public_jwk()}), json!({}))],
        ),
        (
            "alg none",
            vec![hand_made_jws(
                &json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}),
                &good_claims(),
                |_| vec![],
            )],
        ),
        (
            "alg HS256",
            vec![hand_made_jws(
                &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}),
                &good_claims(),
                |m| hmac_sha256(b"a-shared-secret-nobody-should-use", m),
            )],
        ),
        (
            "alg RS256",
            vec![hand_made_jws(
                &json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": rsa.public_jwk()}),
                &good_claims(),
                |m| rsa.sign(m).unwrap(),
            )],
        ),
        ("no jti", vec![with(json!({}), json!({"jti": null}))]),
        ("no htm", vec![with(json!({}), json!({"htm": null}))]),
        ("no htu", vec![with(json!({}), json!({"htu": null}))]),
        ("no iat", vec![with(json!({}), json!({"iat": null}))]),
        ("htm GET", vec![with(json!({}), json!({"htm": "GET"}))]),
        ("htm PUT", vec![with(json!({}), json!({"htm": "PUT"}))]),
        (
            "htu of PAR",
            vec![with(json!({}), json!({"htu": par_url(tpp)}))],
        ),
        (
            "htu with another port",
            vec![with(json!({}), json!({"htu": other_port}))],
        ),
        (
            "htu on the browser listener",
            vec![with(
                json!({}),
                json!({"htu": format!("{}/token", p.kit.issuer)}),
            )],
        ),
        (
            "htu with a longer path",
            vec![with(
                json!({}),
                json!({"htu": format!("{url}ohnonotagain")}),
            )],
        ),
        (
            "iat 1 h ago",
            vec![with(json!({}), json!({"iat": now - 3600}))],
        ),
        (
            "iat 1 h ahead",
            vec![with(json!({}), json!({"iat": now + 3600}))],
        ),
        (
            "iat 61 s ahead",
            vec![with(json!({}), json!({"iat": now + 61}))],
        ),
        (
            "expired exp",
            vec![with(json!({}), json!({"exp": now - 1}))],
        ),
    ];
    for (what, proofs) in cases {
        let r = cc(&p, tpp, &proofs).await;
        assert_error(&r, 400, "invalid_dpop_proof", what);
    }
    // Accepted: FAPI 2.0 clock skew both ways, the suite's htu variations (query and
    // fragment ignored, scheme and host case-insensitive), extra members, nbf/exp.
    let upper = url.replacen("https://localhost", "HTTPS://LOCALHOST", 1);
    let fine: Vec<(&str, String)> = vec![
        (
            "iat 10 s ago",
            with(json!({}), json!({"iat": server_now(&p) - 10})),
        ),
        (
            "iat 10 s ahead",
            with(json!({}), json!({"iat": server_now(&p) + 10})),
        ),
        (
            "htu with query and fragment",
            with(
                json!({}),
                json!({"htu": format!("{url}?allthedoors#cheery")}),
            ),
        ),
        (
            "htu upper-case scheme and host",
            with(json!({}), json!({"htu": upper})),
        ),
        (
            "extra header and claims",
            with(json!({"tx_id": 1}), json!({"tx_id_key": 2})),
        ),
        (
            "nbf now and exp in 5 min",
            with(
                json!({}),
                json!({"nbf": server_now(&p), "exp": server_now(&p) + 300}),
            ),
        ),
    ];
    for (what, pr) in fine {
        let r = cc(&p, tpp, &[pr]).await;
        assert_dpop_bound(&r, k, what);
    }
    p.finish().await;
}

#[tokio::test]
async fn a_proof_is_used_once() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    let pr = proof(&p, k, "POST", &token_url(tpp), None);
    assert_dpop_bound(
        &cc(&p, tpp, std::slice::from_ref(&pr)).await,
        k,
        "first use",
    );
    let r = cc(&p, tpp, &[pr]).await;
    assert_error(&r, 400, "invalid_dpop_proof", "replayed proof (jti)");
    // Same jti, fresh proof otherwise: still a replay.
    let fixed = json!({"jti": "fixed-jti-1"});
    let first = proof_with(
        &p,
        k,
        "POST",
        &token_url(tpp),
        None,
        json!({}),
        fixed.clone(),
    );
    assert_dpop_bound(
        &cc(&p, tpp, &[first]).await,
        k,
        "first use of the fixed jti",
    );
    p.clock.advance(1);
    let again = proof_with(&p, k, "POST", &token_url(tpp), None, json!({}), fixed);
    let r = cc(&p, tpp, &[again]).await;
    assert_error(&r, 400, "invalid_dpop_proof", "second use of the fixed jti");
    p.finish().await;
}

// ---------------------------------------------------------------------------------------
// The protected resource (FAPI 2.0 §5.3.4, RFC 9449 §7)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn userinfo_checks_every_proof_rule_and_the_scheme() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let k = key(tpp);
    let at = at_of(&dpop_tokens(&p).await);
    let url = userinfo_url(tpp);
    let with =
        |header: Value, claims: Value| proof_with(&p, k, "GET", &url, Some(&at), header, claims);
    let other = new_key();
    let cases: Vec<(&str, &str, Vec<String>, &str)> = vec![
        ("no proof", "DPoP", vec![], "invalid_dpop_proof"),
        (
            "two proofs",
            "DPoP",
            vec![with(json!({}), json!({})), with(json!({}), json!({}))],
            "invalid_dpop_proof",
        ),
        (
            "no ath",
            "DPoP",
            vec![with(json!({}), json!({"ath": null}))],
            "invalid_dpop_proof",
        ),
        (
            "wrong ath",
            "DPoP",
            vec![with(
                json!({}),
                json!({"ath": fapi_jose::sha256_b64(b"another token")}),
            )],
            "invalid_dpop_proof",
        ),
        (
            "htm POST",
            "DPoP",
            vec![with(json!({}), json!({"htm": "POST"}))],
            "invalid_dpop_proof",
        ),
        (
            "htu of the token endpoint",
            "DPoP",
            vec![with(json!({}), json!({"htu": token_url(tpp)}))],
            "invalid_dpop_proof",
        ),
        (
            "iat 1 h ago",
            "DPoP",
            vec![with(json!({}), json!({"iat": server_now(&p) - 3600}))],
            "invalid_dpop_proof",
        ),
        (
            "typ wrong",
            "DPoP",
            vec![with(json!({"typ": "dpop+jwt+wrongyousee"}), json!({}))],
            "invalid_dpop_proof",
        ),
        (
            "another key",
            "DPoP",
            vec![proof(&p, &other, "GET", &url, Some(&at))],
            "invalid_dpop_proof",
        ),
        // RFC 9449 §7.2: a DPoP-bound token is never a Bearer token, proof or not.
        ("as Bearer", "Bearer", vec![], "invalid_token"),
        (
            "as Bearer with a proof",
            "Bearer",
            vec![with(json!({}), json!({}))],
            "invalid_token",
        ),
    ];
    for (what, scheme, proofs, error) in cases {
        let r = userinfo(tpp, scheme, &at, &proofs).await;
        assert_dpop_challenge(&r, error, what);
    }
    let pr = with(json!({}), json!({}));
    let r = userinfo(tpp, "DPoP", &at, std::slice::from_ref(&pr)).await;
    assert_eq!(r.status, 200, "control: {:?}", r.body);
    let r = userinfo(tpp, "DPoP", &at, &[pr]).await;
    assert_dpop_challenge(&r, "invalid_dpop_proof", "replayed proof at userinfo");
    let r = userinfo(
        tpp,
        "DPoP",
        &at,
        &[with(json!({}), json!({"iat": server_now(&p) + 10}))],
    )
    .await;
    assert_eq!(r.status, 200, "iat 10 s ahead: {:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn certificate_bound_token_is_refused_with_the_dpop_scheme() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.pkjwt;
    let at = at_of(&flow(&p, tpp).await);
    let url = userinfo_url(tpp);
    let r = tpp.get_with_token(&url, &at, true).await.unwrap();
    assert_eq!(
        r.status, 200,
        "control, Bearer over the certificate: {:?}",
        r.body
    );
    let k = new_key();
    let r = reply(
        tpp.http
            .get(&url)
            .header("authorization", format!("DPoP {at}"))
            .header("DPoP", proof(&p, &k, "GET", &url, Some(&at)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_dpop_challenge(&r, "invalid_token", "certificate-bound token as DPoP");
    p.finish().await;
}

// ---------------------------------------------------------------------------------------
// Server nonces (RFC 9449 §8, §9; FAPI 2.0 §5.3.2.1-10)
// ---------------------------------------------------------------------------------------

fn nonce_of(r: &Reply) -> String {
    r.headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no DPoP-Nonce header: {:?}", r.headers))
        .to_owned()
}

#[tokio::test]
async fn nonce_required_mode_demands_a_fresh_server_nonce() {
    let p = TestPlatform::spawn_with(|c| c.dpop_nonce_required = true).await;
    let tpp = &p.dpop;
    let k = key(tpp);
    let url = token_url(tpp);
    let with_nonce =
        |n: Value| proof_with(&p, k, "POST", &url, None, json!({}), json!({"nonce": n}));

    // Token endpoint: no nonce → 400 use_dpop_nonce with a nonce; retry with it → token.
    let r = cc(&p, tpp, &[proof(&p, k, "POST", &url, None)]).await;
    assert_error(&r, 400, "use_dpop_nonce", "token without a nonce");
    let nonce = nonce_of(&r);
    let r = cc(&p, tpp, &[with_nonce(json!("made-up"))]).await;
    assert_error(&r, 400, "use_dpop_nonce", "token with an unknown nonce");
    let r = cc(&p, tpp, &[with_nonce(json!(nonce))]).await;
    assert_dpop_bound(&r, k, "token with the server nonce");
    nonce_of(&r);

    // Nonces expire: two windows later the old one is stale.
    p.clock.advance(2 * authz_server::dpop::NONCE_WINDOW);
    let r = cc(&p, tpp, &[with_nonce(json!(nonce))]).await;
    assert_error(&r, 400, "use_dpop_nonce", "stale nonce");

    // PAR asks for one too.
    let (r, _) = par(&p, tpp, &[], &[proof(&p, k, "POST", &par_url(tpp), None)]).await;
    assert_error(&r, 400, "use_dpop_nonce", "PAR without a nonce");
    let n = nonce_of(&r);
    let pr = proof_with(
        &p,
        k,
        "POST",
        &par_url(tpp),
        None,
        json!({}),
        json!({"nonce": n}),
    );
    let (r, pkce) = par(&p, tpp, &[], &[pr]).await;
    let code = approve(&p, tpp, &r).await;

    // The TPP helpers follow the protocol: retry once with the nonce they were given.
    let t = tpp.exchange_code_dpop(&code, &pkce).await.unwrap();
    assert_dpop_bound(&t, k, "exchange after a nonce retry");
    let at = at_of(&t);

    // Userinfo: 401 with a DPoP use_dpop_nonce challenge and a nonce (RFC 9449 §9).
    let ui = userinfo_url(tpp);
    let r = userinfo(tpp, "DPoP", &at, &[proof(&p, k, "GET", &ui, Some(&at))]).await;
    assert_dpop_challenge(&r, "use_dpop_nonce", "userinfo without a nonce");
    let n = nonce_of(&r);
    let pr = proof_with(&p, k, "GET", &ui, Some(&at), json!({}), json!({"nonce": n}));
    let r = userinfo(tpp, "DPoP", &at, &[pr]).await;
    assert_eq!(r.status, 200, "userinfo with the nonce: {:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn nonces_are_not_required_by_default() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let r = cc(
        &p,
        tpp,
        &[proof(&p, key(tpp), "POST", &token_url(tpp), None)],
    )
    .await;
    assert_dpop_bound(&r, key(tpp), "no nonce");
    assert!(r.headers.get("dpop-nonce").is_none());
    p.finish().await;
}
