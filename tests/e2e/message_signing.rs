//! FAPI 2.0 Message Signing: signed request objects (RFC 9101) at PAR, JWT-secured
//! authorization responses (JARM) and the sandbox Message Signing clients. Every refusal
//! test also sends an otherwise valid object, so it fails if its rule is removed.

use authz_server::clock::Clock;
use fapi_conformance::tpp::{Auth, Reply, Tpp};
use fapi_conformance::{Pkce, browser::param};
use serde_json::{Value, json};
use std::sync::Arc;
use wekeza_tests::TestPlatform;

const TYP: &str = "oauth-authz-req+jwt";

/// The two Message Signing sandbox clients, signing on the server's clock.
async fn ms_clients(p: &TestPlatform) -> (Tpp, Tpp) {
    let kc = p.kit.message_signing_clients();
    assert_eq!(kc.len(), 2, "the kit has two Message Signing clients");
    let mut out = Vec::new();
    for c in kc {
        assert!(c.request_object_signing);
        assert_eq!(c.response_mode.as_deref(), Some("jwt"));
        assert_eq!(c.token_endpoint_auth_method, "private_key_jwt");
        let mut t = Tpp::from_kit(&p.kit, c).await.unwrap();
        let clock = p.clock.clone();
        t.clock = Arc::new(move || clock.now());
        out.push(t);
    }
    let b = out.pop().unwrap();
    (out.pop().unwrap(), b)
}

fn inner(tpp: &Tpp, pkce: &Pkce) -> Vec<(String, String)> {
    tpp.authz_params(pkce, "st-in", "n-in", &[("response_mode", "jwt")])
}

#[track_caller]
fn assert_created(r: &Reply) -> String {
    assert_eq!(r.status.as_u16(), 201, "PAR should succeed: {:?}", r.body);
    r.str("request_uri").expect("request_uri").to_owned()
}

#[track_caller]
fn assert_ro_refused(r: &Reply, what: &str) {
    assert_eq!(r.status.as_u16(), 400, "{what}: {:?}", r.body);
    assert_eq!(r.error(), "invalid_request_object", "{what}: {:?}", r.body);
}

/// A compact JWS with a hand-made header (for algorithms our signer refuses to use).
fn forged(header: Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        fapi_jose::b64(header.to_string().as_bytes()),
        fapi_jose::b64(claims.to_string().as_bytes()),
        fapi_jose::b64(sig)
    )
}

/// Customer signs in and decides on a pushed request; returns the redirect back.
async fn decide(p: &TestPlatform, tpp: &Tpp, request_uri: &str, approve: bool) -> url::Url {
    let url = tpp.authorize_url(request_uri);
    let otp = p.fresh_otp();
    let c = &p.kit.customer;
    p.customer()
        .authorize(&url, &c.username, &c.password, &otp, approve)
        .await
        .unwrap()
}

#[tokio::test]
async fn discovery_lists_message_signing() {
    let p = TestPlatform::spawn().await;
    let d = &p.pkjwt.discovery;
    assert_eq!(d["request_parameter_supported"], true);
    assert_eq!(
        d["request_object_signing_alg_values_supported"],
        json!(["ES256", "PS256", "EdDSA"])
    );
    assert_eq!(
        d["response_modes_supported"],
        json!(["query", "jwt", "query.jwt"])
    );
    let algs = d["authorization_signing_alg_values_supported"]
        .as_array()
        .unwrap();
    assert!(algs.contains(&json!("ES256")));
    p.finish().await;
}

#[tokio::test]
async fn signed_par_jarm_success_and_code_exchange() {
    let p = TestPlatform::spawn().await;
    let (ms, _) = ms_clients(&p).await;
    let pkce = Pkce::new();
    let ro = ms.request_object(&inner(&ms, &pkce), json!({}));
    // Values outside the object are ignored (RFC 9101 §6.3): state, nonce, scope.
    let r = ms
        .par_signed(
            &ro,
            &[("state", "st-out"), ("nonce", "n-out"), ("scope", "bogus")],
        )
        .await
        .unwrap();
    let uri = assert_created(&r);
    let back = decide(&p, &ms, &uri, true).await;
    // JARM: only `response` on the redirect; iss, code and state inside it.
    assert!(param(&back, "code").is_none(), "code only inside the JWT");
    assert!(param(&back, "iss").is_none(), "iss only inside the JWT");
    assert!(param(&back, "state").is_none(), "state only inside the JWT");
    let c = ms.jarm_response(&back).await.unwrap();
    assert_eq!(c["state"], "st-in", "the state from inside the object");
    assert_eq!(c["aud"], ms.client_id.as_str());
    let exp = c["exp"].as_i64().unwrap();
    assert!(
        exp > p.clock.now() && exp <= p.clock.now() + 120,
        "short-lived"
    );
    let code = c["code"].as_str().unwrap();
    let t = ms.exchange_code(code, &pkce).await.unwrap();
    assert_eq!(t.status, 200, "{:?}", t.body);
    let id = wekeza_tests::jwt_claims(t.str("id_token").unwrap());
    assert_eq!(id["nonce"], "n-in", "the nonce from inside the object");
    p.finish().await;
}

#[tokio::test]
async fn unsigned_par_is_refused_for_a_require_signed_client() {
    let p = TestPlatform::spawn().await;
    let (ms, _) = ms_clients(&p).await;
    let pkce = Pkce::new();
    let r = ms
        .par(&pkce, "s", "n", &[("response_mode", "jwt")])
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 400, "{:?}", r.body);
    assert_eq!(r.error(), "invalid_request");
    // Clients not registered for it may still push plain requests, or signed ones.
    let r = p.pkjwt.par(&pkce, "s", "n", &[]).await.unwrap();
    assert_created(&r);
    let ro = p
        .pkjwt
        .request_object(&p.pkjwt.authz_params(&pkce, "s", "n", &[]), json!({}));
    assert_created(&p.pkjwt.par_signed(&ro, &[]).await.unwrap());
    p.finish().await;
}

#[tokio::test]
async fn each_request_object_rule_is_enforced() {
    let p = TestPlatform::spawn().await;
    let (ms, _) = ms_clients(&p).await;
    let pkce = Pkce::new();
    let params = inner(&ms, &pkce);
    let now = p.clock.now();
    let cases: Vec<(&str, Value)> = vec![
        ("missing exp", json!({"exp": null})),
        ("missing nbf", json!({"nbf": null})),
        ("expired", json!({"nbf": now - 600, "exp": now - 1})),
        (
            "nbf over 60 min old",
            json!({"nbf": now - 3601, "exp": now + 60}),
        ),
        (
            "lifetime over 60 min",
            json!({"nbf": now - 10, "exp": now - 10 + 3601}),
        ),
        (
            "nbf too far ahead",
            json!({"nbf": now + 120, "exp": now + 300}),
        ),
        (
            "aud another URL",
            json!({"aud": format!("{}/par", ms.issuer)}),
        ),
        (
            "aud array without issuer",
            json!({"aud": ["https://other.example"]}),
        ),
        ("iss another client", json!({"iss": "sandbox-tpp-pkjwt"})),
        (
            "client_id another client",
            json!({"client_id": "sandbox-tpp-pkjwt"}),
        ),
        (
            "request_uri inside",
            json!({"request_uri": "urn:ietf:params:oauth:request_uri:x"}),
        ),
    ];
    for (what, o) in cases {
        let ro = ms.request_object(&params, o);
        let r = ms.par_signed(&ro, &[]).await.unwrap();
        assert_ro_refused(&r, what);
        // An old nbf with a valid exp is always over the lifetime limit as well; the
        // description shows which rule refused it.
        if what == "nbf over 60 min old" {
            let d = r.body["error_description"].as_str().unwrap_or_default();
            assert!(d.contains("in the past"), "{what}: {d}");
        }
    }
    // Accepted edges: an aud array holding the issuer, nbf 8 s ahead, a 60 min lifetime.
    let ok: Vec<(&str, Value)> = vec![
        (
            "aud array",
            json!({"aud": ["https://other.example", ms.issuer]}),
        ),
        ("nbf +8 s", json!({"nbf": now + 8, "exp": now + 308})),
        ("60 min", json!({"nbf": now - 10, "exp": now - 10 + 3600})),
        ("no jti", json!({"jti": null})),
    ];
    for (what, o) in ok {
        let ro = ms.request_object(&params, o);
        let r = ms.par_signed(&ro, &[]).await.unwrap();
        assert_eq!(r.status.as_u16(), 201, "{what}: {:?}", r.body);
    }
    p.finish().await;
}

#[tokio::test]
async fn request_object_signatures_and_algorithms() {
    let p = TestPlatform::spawn().await;
    let (ms, ms2) = ms_clients(&p).await;
    let pkce = Pkce::new();
    let claims = ms.request_object_claims(&inner(&ms, &pkce), json!({}));
    let Auth::PrivateKeyJwt(key) = &ms.auth else {
        panic!("private_key_jwt client")
    };
    let Auth::PrivateKeyJwt(key2) = &ms2.auth else {
        panic!("private_key_jwt client")
    };
    let good = key.sign_jwt(Some(TYP), &claims).unwrap();
    assert_created(&ms.par_signed(&good, &[]).await.unwrap());
    let sig = good.rsplit('.').next().unwrap();
    let sig = fapi_jose::b64_decode(sig).unwrap();
    let kid = key.kid();
    let cases = vec![
        (
            "none",
            forged(json!({"alg": "none", "typ": TYP}), &claims, b""),
        ),
        (
            "RS256",
            forged(
                json!({"alg": "RS256", "typ": TYP, "kid": kid}),
                &claims,
                &sig,
            ),
        ),
        (
            "invalid signature",
            forged(
                json!({"alg": "ES256", "typ": TYP, "kid": kid}),
                &claims,
                &[7u8; 64],
            ),
        ),
        // The suite's check: client 2's key used for a client 1 object.
        ("client 2's key", key2.sign_jwt(Some(TYP), &claims).unwrap()),
        ("wrong typ", key.sign_jwt(Some("at+jwt"), &claims).unwrap()),
    ];
    for (what, ro) in cases {
        assert_ro_refused(&ms.par_signed(&ro, &[]).await.unwrap(), what);
    }
    // typ absent or JWT is accepted.
    for typ in [None, Some("JWT")] {
        let ro = key.sign_jwt(typ, &claims).unwrap();
        assert_created(&ms.par_signed(&ro, &[]).await.unwrap());
    }
    p.finish().await;
}

#[tokio::test]
async fn inner_parameters_are_validated_and_jarm_is_required() {
    let p = TestPlatform::spawn().await;
    let (ms, _) = ms_clients(&p).await;
    let pkce = Pkce::new();
    // The PAR rules apply inside the object: a plain PKCE method is refused.
    let ro = ms.request_object(
        &ms.authz_params(
            &pkce,
            "s",
            "n",
            &[("response_mode", "jwt"), ("code_challenge_method", "plain")],
        ),
        json!({}),
    );
    let r = ms.par_signed(&ro, &[]).await.unwrap();
    assert_eq!(r.error(), "invalid_request", "{:?}", r.body);
    // A JARM client must ask for a JWT response.
    let ro = ms.request_object(&ms.authz_params(&pkce, "s", "n", &[]), json!({}));
    let r = ms.par_signed(&ro, &[]).await.unwrap();
    assert_eq!(r.error(), "invalid_request", "{:?}", r.body);
    // query.jwt is the same mode.
    let ro = ms.request_object(
        &ms.authz_params(&pkce, "s", "n", &[("response_mode", "query.jwt")]),
        json!({}),
    );
    assert_created(&ms.par_signed(&ro, &[]).await.unwrap());
    // A response-mode outside the object does not count.
    let ro = ms.request_object(&ms.authz_params(&pkce, "s", "n", &[]), json!({}));
    let r = ms
        .par_signed(&ro, &[("response_mode", "jwt")])
        .await
        .unwrap();
    assert_eq!(r.error(), "invalid_request", "{:?}", r.body);
    // Clients not registered for JARM cannot ask for it.
    let r = p
        .pkjwt
        .par(&pkce, "s", "n", &[("response_mode", "jwt")])
        .await
        .unwrap();
    assert_eq!(r.error(), "invalid_request", "{:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn jarm_error_response_on_deny() {
    let p = TestPlatform::spawn().await;
    let (ms, _) = ms_clients(&p).await;
    let pkce = Pkce::new();
    let ro = ms.request_object(&inner(&ms, &pkce), json!({}));
    let uri = assert_created(&ms.par_signed(&ro, &[]).await.unwrap());
    let back = decide(&p, &ms, &uri, false).await;
    assert!(param(&back, "error").is_none(), "error only inside the JWT");
    assert!(param(&back, "iss").is_none());
    let c = ms.jarm_response(&back).await.unwrap();
    assert_eq!(c["error"], "access_denied");
    assert!(c["error_description"].is_string());
    assert_eq!(c["state"], "st-in");
    assert_eq!(c["iss"], ms.issuer.as_str());
    assert!(c.get("code").is_none());
    // A JARM response signed by anyone else is refused by the client-side check.
    let forged_back = url::Url::parse(&format!(
        "https://tpp.example/cb?response={}",
        p.pkjwt.request_object(&[], json!({}))
    ))
    .unwrap();
    assert!(ms.jarm_response(&forged_back).await.is_err());
    p.finish().await;
}

/// Make a kit client an authorised resource server (`introspection_allowed`).
async fn allow_introspection(p: &TestPlatform, client_id: &str) {
    let store = &p.state().store;
    let mut rec = store.find_client(client_id).await.unwrap().unwrap();
    rec.metadata["introspection_allowed"] = json!(true);
    store.upsert_client(&rec).await.unwrap();
}

#[tokio::test]
async fn jwt_introspection_only_for_resource_servers() {
    let p = TestPlatform::spawn().await;
    assert_eq!(
        p.pkjwt.discovery["introspection_signing_alg_values_supported"],
        json!(["ES256"])
    );
    let t = p.tokens(&p.pkjwt).await;
    let at = t.str("access_token").unwrap().to_owned();
    // The token's own client, not a resource server: plain JSON despite the Accept.
    let (status, ct, body) = p.pkjwt.introspect_jwt(&at).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        ct.as_deref().unwrap().starts_with("application/json"),
        "{ct:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["active"],
        true
    );
    // An authorised resource server gets a signed JWT addressed to it.
    let rs = &p.mtls;
    allow_introspection(&p, &rs.client_id).await;
    let (status, ct, body) = rs.introspect_jwt(&at).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some("application/token-introspection+jwt"));
    let u = fapi_jose::Unverified::parse(&body).unwrap();
    assert_eq!(u.header.typ.as_deref(), Some("token-introspection+jwt"));
    let c = rs.verify_server_jwt(&body, true).await.unwrap();
    assert_eq!(c["aud"], rs.client_id.as_str());
    assert!(c["iat"].is_i64());
    assert_eq!(c["token_introspection"]["active"], true);
    assert_eq!(
        c["token_introspection"]["client_id"],
        p.pkjwt.client_id.as_str()
    );
    // Without the Accept header, the same caller gets JSON.
    let r = rs
        .post_form(
            &rs.endpoint("introspection_endpoint"),
            &rs.form(&[("token", &at)]),
            true,
        )
        .await
        .unwrap();
    assert_eq!(r.body["active"], true);
    // An unknown token: a signed inactive answer.
    let (_, _, body) = rs.introspect_jwt("nope").await.unwrap();
    let c = rs.verify_server_jwt(&body, true).await.unwrap();
    assert_eq!(c["token_introspection"], json!({"active": false}));
    p.finish().await;
}
