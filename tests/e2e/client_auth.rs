//! Client authentication at the PAR and token endpoints (FAPI 2.0 §5.3.2.1-6/-8/-13,
//! §5.4.1, RFC 7523 §3, RFC 8705 §2). Every broken rule is a 401 `invalid_client`, and
//! every negative case has a positive control next to it so it cannot pass by accident.
//!
//! The helpers at the top are shared with `token`, `resource` and `tls`.

use authz_server::clock::Clock;
use devpki::{DevCa, Issued};
use fapi_conformance::tpp::{ASSERTION_TYPE, Auth, enc, https_client, random};
use fapi_conformance::{Pkce, Tpp};
use fapi_jose::{Alg, SigningKey};
use serde_json::{Value, json};
use wekeza_tests::{Reply, TestPlatform, query_param};

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// The server's clock (the harness moves it forward; assertions must follow it).
pub(crate) fn server_now(p: &TestPlatform) -> i64 {
    p.clock.now()
}

/// A client assertion for `tpp` whose `iat`/`exp` follow the server clock, with
/// `overrides` applied last (`null` removes a claim).
pub(crate) fn assertion(p: &TestPlatform, tpp: &Tpp, overrides: Value) -> String {
    let now = server_now(p);
    let mut claims = json!({"iat": now, "exp": now + 60});
    if let (Some(c), Some(o)) = (claims.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            c.insert(k.clone(), v.clone());
        }
    }
    tpp.assertion_with(claims)
}

/// Client authentication parameters that follow the server clock.
pub(crate) fn auth(p: &TestPlatform, tpp: &Tpp) -> Vec<(String, String)> {
    match tpp.auth {
        Auth::PrivateKeyJwt(_) => vec![
            ("client_id".into(), tpp.client_id.clone()),
            ("client_assertion_type".into(), ASSERTION_TYPE.into()),
            ("client_assertion".into(), assertion(p, tpp, json!({}))),
        ],
        Auth::TlsClientAuth => vec![("client_id".into(), tpp.client_id.clone())],
    }
}

/// `auth` plus `params`.
pub(crate) fn form(p: &TestPlatform, tpp: &Tpp, params: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f = auth(p, tpp);
    f.extend(
        params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    f
}

/// POST an authenticated form to one of `tpp`'s endpoints over its certificate.
pub(crate) async fn call(
    p: &TestPlatform,
    tpp: &Tpp,
    endpoint: &str,
    params: &[(&str, &str)],
) -> Reply {
    tpp.post_form(&tpp.endpoint(endpoint), &form(p, tpp, params), true)
        .await
        .unwrap()
}

/// The token endpoint, authenticated, over `tpp`'s certificate.
pub(crate) async fn token(p: &TestPlatform, tpp: &Tpp, params: &[(&str, &str)]) -> Reply {
    call(p, tpp, "token_endpoint", params).await
}

pub(crate) async fn refresh(p: &TestPlatform, tpp: &Tpp, rt: &str) -> Reply {
    token(
        p,
        tpp,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await
}

/// A pushed authorization request (clock-aware) → the customer approves → the code.
pub(crate) async fn code(p: &TestPlatform, tpp: &Tpp) -> (String, Pkce) {
    let pkce = Pkce::new();
    let mut f = auth(p, tpp);
    let mut base = tpp.par_form(&pkce, "st-123", "n-456", &[]);
    base.retain(|(k, _)| !k.starts_with("client_"));
    f.extend(base);
    let par = tpp
        .post_form(
            &tpp.endpoint("pushed_authorization_request_endpoint"),
            &f,
            true,
        )
        .await
        .unwrap();
    assert_eq!(par.status, 201, "PAR: {:?}", par.body);
    let url = tpp.authorize_url(par.str("request_uri").unwrap());
    let otp = p.fresh_otp();
    let c = &p.kit.customer;
    let back = p
        .customer()
        .authorize(&url, &c.username, &c.password, &otp, true)
        .await
        .unwrap();
    (query_param(&back, "code").expect("code in redirect"), pkce)
}

pub(crate) async fn exchange(p: &TestPlatform, tpp: &Tpp, code: &str, pkce: &Pkce) -> Reply {
    token(
        p,
        tpp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &tpp.redirect_uri),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await
}

/// A complete approved flow (clock-aware, so flows can follow one another): the tokens.
pub(crate) async fn flow(p: &TestPlatform, tpp: &Tpp) -> Reply {
    let (code, pkce) = code(p, tpp).await;
    let r = exchange(p, tpp, &code, &pkce).await;
    assert_eq!(r.status, 200, "code exchange: {:?}", r.body);
    r
}

pub(crate) async fn client_credentials(p: &TestPlatform, tpp: &Tpp, scope: &str) -> Reply {
    token(
        p,
        tpp,
        &[("grant_type", "client_credentials"), ("scope", scope)],
    )
    .await
}

/// Turn a response into a [`Reply`] (JSON body or `Null`).
pub(crate) async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Encode a form as `application/x-www-form-urlencoded`.
pub(crate) fn encode(form: &[(String, String)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The sandbox CA (the one the mTLS listener trusts), to issue extra client certificates.
pub(crate) fn sandbox_ca(p: &TestPlatform) -> DevCa {
    let certs = p.dir.join("certs");
    DevCa::load(
        &std::fs::read_to_string(certs.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(certs.join("ca.key")).unwrap(),
    )
    .unwrap()
}

/// An HTTPS client trusting the sandbox CA and presenting `cert`.
pub(crate) fn http_with(p: &TestPlatform, cert: &Issued) -> reqwest::Client {
    let ca = std::fs::read(&p.kit.ca_cert).unwrap();
    let identity = format!("{}{}", cert.cert_pem, cert.key_pem);
    https_client(&ca, Some(identity.as_bytes())).unwrap()
}

/// `tpp`, but presenting `cert` on the mTLS listener.
pub(crate) fn with_cert(p: &TestPlatform, tpp: &Tpp, cert: &Issued) -> Tpp {
    let mut t = tpp.clone();
    t.http = http_with(p, cert);
    t.x5t_s256 = cert.x5t_s256();
    t
}

/// Exact status, exact `error`, JSON, `Cache-Control: no-store`.
#[track_caller]
pub(crate) fn assert_error(r: &Reply, status: u16, error: &str, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {:?}", r.body);
    assert_eq!(r.error(), error, "{what}: {:?}", r.body);
    assert!(
        r.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{what}: error is not JSON: {:?}",
        r.headers
    );
    assert_eq!(
        r.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{what}: error may be cached"
    );
    assert!(
        r.body.get("access_token").is_none(),
        "{what}: a token came back"
    );
}

#[track_caller]
pub(crate) fn assert_invalid_client(r: &Reply, what: &str) {
    assert_error(r, 401, "invalid_client", what);
}

// ---------------------------------------------------------------------------------------
// Local helpers
// ---------------------------------------------------------------------------------------

/// Replace the client authentication of `form` with this assertion.
fn swap_assertion(mut form: Vec<(String, String)>, a: &str) -> Vec<(String, String)> {
    for (k, v) in &mut form {
        if k == "client_assertion" {
            *v = a.to_owned();
        }
    }
    form
}

/// A valid pushed authorization request from `tpp`, authenticated with assertion `a`.
async fn par_with(tpp: &Tpp, a: &str) -> Reply {
    let mut f = tpp.par_form(&Pkce::new(), "st", "n", &[]);
    f.retain(|(k, _)| !k.starts_with("client_"));
    let mut form = vec![
        ("client_id".to_owned(), tpp.client_id.clone()),
        (
            "client_assertion_type".to_owned(),
            ASSERTION_TYPE.to_owned(),
        ),
        ("client_assertion".to_owned(), a.to_owned()),
    ];
    form.extend(f);
    tpp.post_form(
        &tpp.endpoint("pushed_authorization_request_endpoint"),
        &form,
        true,
    )
    .await
    .unwrap()
}

/// A valid client_credentials request from `tpp`, authenticated with assertion `a`.
async fn token_with(p: &TestPlatform, tpp: &Tpp, a: &str) -> Reply {
    let form = swap_assertion(
        form(
            p,
            tpp,
            &[("grant_type", "client_credentials"), ("scope", "accounts")],
        ),
        a,
    );
    tpp.post_form(&tpp.endpoint("token_endpoint"), &form, true)
        .await
        .unwrap()
}

/// Positive control: fresh good assertions pass at PAR (201) and token (200).
async fn assert_good_assertion_accepted(p: &TestPlatform, tpp: &Tpp) {
    let r = par_with(tpp, &assertion(p, tpp, json!({}))).await;
    assert_eq!(r.status, 201, "control PAR: {:?}", r.body);
    let r = token_with(p, tpp, &assertion(p, tpp, json!({}))).await;
    assert_eq!(r.status, 200, "control token: {:?}", r.body);
}

/// Both endpoints refuse an assertion built by `make` (a fresh one per request).
async fn assert_refused_at_par_and_token(
    p: &TestPlatform,
    tpp: &Tpp,
    what: &str,
    make: impl Fn() -> String,
) {
    let r = par_with(tpp, &make()).await;
    assert_invalid_client(&r, &format!("PAR, {what}"));
    let r = token_with(p, tpp, &make()).await;
    assert_invalid_client(&r, &format!("token, {what}"));
}

/// Compact JWS with a hand-made header and signature bytes.
pub(crate) fn hand_made_jws(
    header: &Value,
    claims: &Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!(
        "{}.{}",
        fapi_jose::b64(&serde_json::to_vec(header).unwrap()),
        fapi_jose::b64(&serde_json::to_vec(claims).unwrap())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", fapi_jose::b64(&sig))
}

fn sha256(data: &[u8]) -> Vec<u8> {
    fapi_jose::b64_decode(&fapi_jose::sha256_b64(data)).unwrap()
}

/// RFC 2104 HMAC-SHA-256.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = if key.len() > 64 {
        sha256(key)
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let mut inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(msg);
    let mut outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    outer.extend(sha256(&inner));
    sha256(&outer)
}

/// Standard claims for `client_id` against the server clock.
fn claims_for(p: &TestPlatform, client_id: &str) -> Value {
    let now = server_now(p);
    json!({"iss": client_id, "sub": client_id, "aud": p.kit.issuer, "jti": random(16), "iat": now, "exp": now + 60})
}

/// Register a `private_key_jwt` client holding `key` (client_credentials only).
async fn register_pkjwt_client(p: &TestPlatform, client_id: &str, key: &SigningKey) {
    let now = server_now(p);
    let metadata = json!({
        "client_id": client_id,
        "client_name": "Extra test TPP",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.public_jwk()]},
        "redirect_uris": [],
        "grant_types": ["client_credentials"],
        "scope": "accounts payments",
    });
    p.state()
        .store
        .upsert_client(&authz_store::ClientRecord {
            client_id: client_id.into(),
            metadata,
            created_at: now,
            updated_at: now,
        })
        .await
        .unwrap();
}

/// client_credentials for an extra (non-kit) client, over the pkjwt TPP's certificate
/// (a `private_key_jwt` client's certificate only binds the token).
async fn token_for_client(p: &TestPlatform, client_id: &str, a: &str) -> Reply {
    let form: Vec<(String, String)> = [
        ("client_id", client_id),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", a),
        ("grant_type", "client_credentials"),
        ("scope", "accounts"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    p.pkjwt
        .post_form(&p.pkjwt.endpoint("token_endpoint"), &form, true)
        .await
        .unwrap()
}

fn pkjwt_kid(p: &TestPlatform) -> String {
    let Auth::PrivateKeyJwt(k) = &p.pkjwt.auth else {
        panic!("pkjwt TPP has no signing key");
    };
    k.kid().to_owned()
}

// ---------------------------------------------------------------------------------------
// private_key_jwt: aud (FAPI 2.0 §5.3.2.1-8)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn assertion_aud_array_containing_issuer_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    assert_refused_at_par_and_token(&p, t, "aud [issuer]", || {
        assertion(&p, t, json!({"aud": [p.kit.issuer]}))
    })
    .await;
    p.finish().await;
}

#[tokio::test]
async fn assertion_aud_token_endpoint_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    let mut urls = vec![t.endpoint("token_endpoint")];
    urls.extend(t.discovery["token_endpoint"].as_str().map(str::to_owned));
    urls.push(format!("{}/token", p.kit.issuer));
    for url in urls {
        assert_refused_at_par_and_token(&p, t, &format!("aud {url}"), || {
            assertion(&p, t, json!({"aud": url}))
        })
        .await;
    }
    p.finish().await;
}

#[tokio::test]
async fn assertion_aud_par_endpoint_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    let mut urls = vec![t.endpoint("pushed_authorization_request_endpoint")];
    urls.extend(
        t.discovery["pushed_authorization_request_endpoint"]
            .as_str()
            .map(str::to_owned),
    );
    urls.push(format!("{}/par", p.kit.issuer));
    for url in urls {
        assert_refused_at_par_and_token(&p, t, &format!("aud {url}"), || {
            assertion(&p, t, json!({"aud": url}))
        })
        .await;
    }
    p.finish().await;
}

// ---------------------------------------------------------------------------------------
// private_key_jwt: jti, exp, nbf/iat (RFC 7523 §3, FAPI 2.0 §5.3.2.1-13)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn assertion_without_jti_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    assert_refused_at_par_and_token(&p, t, "no jti", || assertion(&p, t, json!({"jti": null})))
        .await;
    assert_refused_at_par_and_token(&p, t, "empty jti", || assertion(&p, t, json!({"jti": ""})))
        .await;
    p.finish().await;
}

#[tokio::test]
async fn assertion_jti_replay_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    // Same endpoint twice.
    let a = assertion(&p, t, json!({}));
    let first = token_with(&p, t, &a).await;
    assert_eq!(first.status, 200, "first use: {:?}", first.body);
    assert_invalid_client(&token_with(&p, t, &a).await, "token, replayed");
    // PAR then token, and PAR twice: one jti store across endpoints.
    let a = assertion(&p, t, json!({}));
    let first = par_with(t, &a).await;
    assert_eq!(first.status, 201, "first use: {:?}", first.body);
    assert_invalid_client(&par_with(t, &a).await, "PAR, replayed");
    assert_invalid_client(&token_with(&p, t, &a).await, "token after PAR, replayed");
    // A different assertion with the same jti is a replay as well.
    let jti = random(16);
    let a1 = assertion(&p, t, json!({"jti": jti}));
    let a2 = assertion(&p, t, json!({"jti": jti, "exp": server_now(&p) + 50}));
    assert_ne!(a1, a2);
    assert_eq!(token_with(&p, t, &a1).await.status, 200);
    assert_invalid_client(&token_with(&p, t, &a2).await, "token, jti reused");
    p.finish().await;
}

#[tokio::test]
async fn expired_assertion_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    assert_refused_at_par_and_token(&p, t, "exp in the past", || {
        let now = server_now(&p);
        assertion(&p, t, json!({"iat": now - 120, "exp": now - 5}))
    })
    .await;
    assert_refused_at_par_and_token(&p, t, "no exp", || assertion(&p, t, json!({"exp": null})))
        .await;
    // Valid when signed, expired by the time it is presented (server clock moves on).
    let a = assertion(&p, t, json!({}));
    let b = assertion(&p, t, json!({}));
    p.clock.advance(61);
    assert_invalid_client(&par_with(t, &a).await, "PAR, expired in flight");
    assert_invalid_client(&token_with(&p, t, &b).await, "token, expired in flight");
    p.finish().await;
}

#[tokio::test]
async fn assertion_nbf_8_seconds_in_the_future_is_accepted() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    let future = |k: &str| {
        let now = server_now(&p);
        assertion(&p, t, json!({k: now + 8, "exp": now + 68}))
    };
    let r = par_with(t, &future("nbf")).await;
    assert_eq!(r.status, 201, "PAR, nbf +8 s: {:?}", r.body);
    let r = token_with(&p, t, &future("nbf")).await;
    assert_eq!(r.status, 200, "token, nbf +8 s: {:?}", r.body);
    let r = par_with(t, &future("iat")).await;
    assert_eq!(r.status, 201, "PAR, iat +8 s: {:?}", r.body);
    let r = token_with(&p, t, &future("iat")).await;
    assert_eq!(r.status, 200, "token, iat +8 s: {:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn assertion_nbf_or_iat_over_60_seconds_in_the_future_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    // 65 s: beyond FAPI's 60 s ceiling even if a second ticks before the check.
    for k in ["nbf", "iat"] {
        assert_refused_at_par_and_token(&p, t, &format!("{k} +65 s"), || {
            let now = server_now(&p);
            assertion(&p, t, json!({k: now + 65, "exp": now + 180}))
        })
        .await;
    }
    p.finish().await;
}

// ---------------------------------------------------------------------------------------
// private_key_jwt: iss/sub, key and algorithm (OIDC Core §9, FAPI 2.0 §5.4.1)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn assertion_iss_different_from_sub_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    for iss in [p.mtls.client_id.as_str(), "someone-else"] {
        assert_refused_at_par_and_token(&p, t, &format!("iss {iss}"), || {
            assertion(&p, t, json!({"iss": iss}))
        })
        .await;
    }
    assert_refused_at_par_and_token(&p, t, "no iss", || assertion(&p, t, json!({"iss": null})))
        .await;
    p.finish().await;
}

#[tokio::test]
async fn assertion_signed_by_other_key_with_same_kid_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    let kid = pkjwt_kid(&p);
    for alg in [Alg::ES256, Alg::PS256, Alg::EdDSA] {
        let impostor = SigningKey::generate(alg, kid.clone()).unwrap();
        assert_refused_at_par_and_token(&p, t, &format!("impostor {alg:?} key"), || {
            impostor
                .sign_jwt(None, &claims_for(&p, &t.client_id))
                .unwrap()
        })
        .await;
    }
    p.finish().await;
}

#[tokio::test]
async fn assertion_signed_with_rs256_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    // A client whose registered key is RSA, so an RS256 signature by that very key
    // would verify if RS256 were allowed.
    let key = SigningKey::generate(Alg::PS256, "rsa-1").unwrap();
    register_pkjwt_client(&p, "tpp-rsa", &key).await;
    let ok = key.sign_jwt(None, &claims_for(&p, "tpp-rsa")).unwrap();
    let r = token_for_client(&p, "tpp-rsa", &ok).await;
    assert_eq!(
        r.status, 200,
        "control: PS256 by the same key: {:?}",
        r.body
    );

    let der_path = p.dir.join("tpp-rsa.p8.der");
    std::fs::write(&der_path, key.to_pkcs8().unwrap()).unwrap();
    let rs256 = hand_made_jws(
        &json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
        &claims_for(&p, "tpp-rsa"),
        |input| {
            // RSASSA-PKCS1-v1_5 with SHA-256 (openssl's default RSA signature).
            let mut child = std::process::Command::new("openssl")
                .args(["dgst", "-sha256", "-keyform", "DER", "-sign"])
                .arg(&der_path)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "openssl could not sign");
            assert_eq!(out.stdout.len(), 256, "RSA-2048 signature");
            out.stdout
        },
    );
    let r = token_for_client(&p, "tpp-rsa", &rs256).await;
    assert_invalid_client(&r, "token, RS256");
    p.finish().await;
}

#[tokio::test]
async fn assertion_signed_with_hs256_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    let Auth::PrivateKeyJwt(k) = &t.auth else {
        panic!("pkjwt TPP has no signing key");
    };
    // Key confusion: the MAC key is material the attacker knows (the public JWK), and
    // also a plain guessable secret.
    let public = serde_json::to_vec(&k.public_jwk()).unwrap();
    for secret in [public.as_slice(), b"secret".as_slice()] {
        assert_refused_at_par_and_token(&p, t, "HS256", || {
            hand_made_jws(
                &json!({"alg": "HS256", "kid": k.kid(), "typ": "JWT"}),
                &claims_for(&p, &t.client_id),
                |input| hmac_sha256(secret, input),
            )
        })
        .await;
    }
    p.finish().await;
}

#[tokio::test]
async fn assertion_with_alg_none_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    let kid = pkjwt_kid(&p);
    for alg in ["none", "None", "NONE"] {
        assert_refused_at_par_and_token(&p, t, &format!("alg {alg}"), || {
            hand_made_jws(
                &json!({"alg": alg, "kid": kid}),
                &claims_for(&p, &t.client_id),
                |_| Vec::new(),
            )
        })
        .await;
    }
    // A real signature stripped off a good assertion.
    assert_refused_at_par_and_token(&p, t, "signature stripped", || {
        let good = assertion(&p, t, json!({}));
        let cut = good.rfind('.').unwrap();
        format!("{}.", &good[..cut])
    })
    .await;
    p.finish().await;
}

// ---------------------------------------------------------------------------------------
// Request shape (FAPI 2.0 §5.3.2.1-6, RFC 7521 §4.2)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn client_secret_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let params = [("grant_type", "client_credentials"), ("scope", "accounts")];
        let ok = token(&p, tpp, &params).await;
        assert_eq!(ok.status, 200, "control: {:?}", ok.body);
        // A shared secret alongside otherwise valid authentication.
        let mut f = form(&p, tpp, &params);
        f.push(("client_secret".into(), "hunter2".into()));
        let r = tpp
            .post_form(&tpp.endpoint("token_endpoint"), &f, true)
            .await
            .unwrap();
        assert_invalid_client(&r, &format!("{}: client_secret", tpp.client_id));
        let mut f = tpp.par_form(&Pkce::new(), "st", "n", &[]);
        f.push(("client_secret".into(), "hunter2".into()));
        let r = tpp
            .post_form(
                &tpp.endpoint("pushed_authorization_request_endpoint"),
                &f,
                true,
            )
            .await
            .unwrap();
        assert_invalid_client(&r, &format!("{}: PAR client_secret", tpp.client_id));
        // client_secret_basic only.
        let r = tpp
            .http
            .post(tpp.endpoint("token_endpoint"))
            .basic_auth(&tpp.client_id, Some("hunter2"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=accounts")
            .send()
            .await
            .unwrap();
        assert_invalid_client(
            &reply(r).await,
            &format!("{}: client_secret_basic", tpp.client_id),
        );
        // A Basic header on top of otherwise valid authentication: two methods (RFC 6749 §2.3).
        let r = tpp
            .http
            .post(tpp.endpoint("token_endpoint"))
            .basic_auth(&tpp.client_id, Some("hunter2"))
            .form(&form(&p, tpp, &params))
            .send()
            .await
            .unwrap();
        assert_invalid_client(
            &reply(r).await,
            &format!("{}: Basic alongside valid authentication", tpp.client_id),
        );
    }
    p.finish().await;
}

#[tokio::test]
async fn wrong_client_assertion_type_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    let params = [("grant_type", "client_credentials"), ("scope", "accounts")];
    for ty in [
        "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer ",
        "jwt-bearer",
        "",
    ] {
        let mut f = form(&p, t, &params);
        for (k, v) in &mut f {
            if k == "client_assertion_type" {
                *v = ty.to_owned();
            }
        }
        let r = t
            .post_form(&t.endpoint("token_endpoint"), &f, true)
            .await
            .unwrap();
        assert_invalid_client(&r, &format!("client_assertion_type {ty:?}"));
    }
    // Assertion without a type, and a type without an assertion.
    for drop in ["client_assertion_type", "client_assertion"] {
        let mut f = form(&p, t, &params);
        f.retain(|(k, _)| k != drop);
        let r = t
            .post_form(&t.endpoint("token_endpoint"), &f, true)
            .await
            .unwrap();
        assert_invalid_client(&r, &format!("without {drop}"));
    }
    p.finish().await;
}

#[tokio::test]
async fn tls_client_auth_with_other_certificate_subject_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let ca = sandbox_ca(&p);
    let params = [("grant_type", "client_credentials"), ("scope", "accounts")];
    // Control: a second certificate with the registered subject authenticates.
    let same = ca
        .issue_client(&p.mtls.client_id, "Wekeza Sandbox TPP", None)
        .unwrap();
    let r = token(&p, &with_cert(&p, &p.mtls, &same), &params).await;
    assert_eq!(r.status, 200, "control, same subject: {:?}", r.body);

    let other_cn = ca
        .issue_client(
            "sandbox-tpp-intruder",
            "Wekeza Sandbox TPP",
            Some(&format!("{}.sandbox.wekeza.test", p.mtls.client_id)),
        )
        .unwrap();
    let other_o = ca
        .issue_client(&p.mtls.client_id, "Another Org", None)
        .unwrap();
    let impostors = [
        ("other CN", with_cert(&p, &p.mtls, &other_cn)),
        ("other O", with_cert(&p, &p.mtls, &other_o)),
        // The other sandbox TPP's genuine certificate.
        ("pkjwt TPP's certificate", {
            let mut t = p.mtls.clone();
            t.http = p.pkjwt.http.clone();
            t
        }),
    ];
    for (what, t) in impostors {
        assert_invalid_client(&token(&p, &t, &params).await, &format!("token, {what}"));
        let f = t.par_form(&Pkce::new(), "st", "n", &[]);
        let r = t
            .post_form(
                &t.endpoint("pushed_authorization_request_endpoint"),
                &f,
                true,
            )
            .await
            .unwrap();
        assert_invalid_client(&r, &format!("PAR, {what}"));
    }
    p.finish().await;
}

#[tokio::test]
async fn private_key_jwt_client_without_assertion_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    assert_good_assertion_accepted(&p, t).await;
    // client_id alone, over the client's own certificate (no fallback to tls_client_auth).
    let f: Vec<(String, String)> = [
        ("client_id", t.client_id.as_str()),
        ("grant_type", "client_credentials"),
        ("scope", "accounts"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let r = t
        .post_form(&t.endpoint("token_endpoint"), &f, true)
        .await
        .unwrap();
    assert_invalid_client(&r, "token, no assertion");
    let mut f = t.par_form(&Pkce::new(), "st", "n", &[]);
    f.retain(|(k, _)| !k.starts_with("client_assertion"));
    let r = t
        .post_form(
            &t.endpoint("pushed_authorization_request_endpoint"),
            &f,
            true,
        )
        .await
        .unwrap();
    assert_invalid_client(&r, "PAR, no assertion");
    p.finish().await;
}

#[tokio::test]
async fn unknown_client_id_is_invalid_client() {
    let p = TestPlatform::spawn().await;
    let params = [("grant_type", "client_credentials"), ("scope", "accounts")];
    // tls_client_auth style, over a genuine sandbox certificate.
    let mut t = p.mtls.clone();
    t.client_id = "no-such-client".into();
    assert_invalid_client(&token(&p, &t, &params).await, "token, unknown tls client");
    let f = t.par_form(&Pkce::new(), "st", "n", &[]);
    let r = t
        .post_form(
            &t.endpoint("pushed_authorization_request_endpoint"),
            &f,
            true,
        )
        .await
        .unwrap();
    assert_invalid_client(&r, "PAR, unknown tls client");
    // private_key_jwt style: iss/sub/client_id all name an unregistered client.
    let mut t = p.pkjwt.clone();
    t.client_id = "no-such-client".into();
    assert_refused_at_par_and_token(&p, &t, "unknown pkjwt client", || {
        assertion(&p, &t, json!({}))
    })
    .await;
    // No client identification at all.
    let r = p
        .mtls
        .post_form(
            &p.mtls.endpoint("token_endpoint"),
            &[("grant_type".into(), "client_credentials".into())],
            true,
        )
        .await
        .unwrap();
    assert_invalid_client(&r, "token, no client_id");
    // client_id naming another client than the assertion.
    let mut f = form(&p, &p.pkjwt, &params);
    for (k, v) in &mut f {
        if k == "client_id" {
            *v = p.mtls.client_id.clone();
        }
    }
    let r = p
        .pkjwt
        .post_form(&p.pkjwt.endpoint("token_endpoint"), &f, true)
        .await
        .unwrap();
    assert_invalid_client(&r, "token, client_id ≠ assertion sub");
    p.finish().await;
}

#[tokio::test]
async fn client_auth_errors_are_401_json_no_store() {
    let p = TestPlatform::spawn().await;
    let t = &p.pkjwt;
    let bad = assertion(&p, t, json!({"aud": [p.kit.issuer]}));
    for (what, r) in [
        ("PAR", par_with(t, &bad).await),
        ("token", token_with(&p, t, &bad).await),
    ] {
        assert_invalid_client(&r, what);
        assert_eq!(
            r.headers.get("pragma").map(|v| v.as_bytes()),
            Some(&b"no-cache"[..]),
            "{what}"
        );
        let obj = r.body.as_object().unwrap();
        assert!(
            obj.keys().all(|k| k == "error" || k == "error_description"),
            "{what}: {obj:?}"
        );
        assert!(obj["error_description"].is_string(), "{what}");
    }
    p.finish().await;
}
