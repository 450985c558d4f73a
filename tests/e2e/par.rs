//! Pushed authorization requests (RFC 9126) under FAPI 2.0 §5.3.2.2: every rule the PAR
//! endpoint enforces, each shown refused with its exact status and RFC 6749 error code.
//! Each test also sends an otherwise valid request, so it fails if the rule is removed.

use fapi_conformance::tpp::{Reply, Tpp};
use fapi_conformance::{Pkce, browser::param};
use fapi_jose::{Alg, SigningKey};
use serde_json::{Value, json};
use std::collections::HashSet;
use wekeza_tests::{TestPlatform, jwt_claims};

const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

fn par_url(tpp: &Tpp) -> String {
    tpp.endpoint("pushed_authorization_request_endpoint")
}

/// Status, RFC 6749 `error` and `Cache-Control: no-store` of a refused request.
#[track_caller]
fn assert_refused(r: &Reply, status: u16, error: &str) {
    assert_eq!(r.status.as_u16(), status, "status; body {:?}", r.body);
    assert_eq!(r.error(), error, "error code; body {:?}", r.body);
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "errors from PAR must not be cached"
    );
    assert!(
        r.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json")),
        "OAuth errors are JSON"
    );
}

#[track_caller]
fn assert_created(r: &Reply) -> String {
    assert_eq!(r.status.as_u16(), 201, "PAR should succeed: {:?}", r.body);
    r.str("request_uri").expect("request_uri").to_owned()
}

/// Replace (or add) one parameter of a form.
fn with(mut form: Vec<(String, String)>, k: &str, v: &str) -> Vec<(String, String)> {
    form.retain(|(n, _)| n != k);
    form.push((k.to_owned(), v.to_owned()));
    form
}

fn without(mut form: Vec<(String, String)>, names: &[&str]) -> Vec<(String, String)> {
    form.retain(|(n, _)| !names.contains(&n.as_str()));
    form
}

async fn to_reply(r: reqwest::Response) -> Reply {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Push with both sandbox clients, `extra` applied as in [`Tpp::par_form`].
async fn par_both(p: &TestPlatform, extra: &[(&str, &str)]) -> Vec<Reply> {
    let mut out = Vec::new();
    for tpp in [&p.pkjwt, &p.mtls] {
        out.push(tpp.par(&Pkce::new(), "st", "n", extra).await.unwrap());
    }
    out
}

#[tokio::test]
async fn par_requires_client_authentication() {
    let p = TestPlatform::spawn().await;
    // Control: the same request, authenticated, is accepted.
    assert_created(&p.mtls.par(&Pkce::new(), "st", "n", &[]).await.unwrap());
    let auth = ["client_id", "client_assertion", "client_assertion_type"];
    for tpp in [&p.pkjwt, &p.mtls] {
        let anonymous = without(tpp.par_form(&Pkce::new(), "st", "n", &[]), &auth);
        for with_cert in [false, true] {
            let r = tpp
                .post_form(&par_url(tpp), &anonymous, with_cert)
                .await
                .unwrap();
            assert_refused(&r, 401, "invalid_client");
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn par_tls_client_auth_requires_the_registered_certificate() {
    let p = TestPlatform::spawn().await;
    let form = p.mtls.par_form(&Pkce::new(), "st", "n", &[]);
    assert_created(
        &p.mtls
            .post_form(&par_url(&p.mtls), &form, true)
            .await
            .unwrap(),
    );
    // No certificate at all.
    let r = p
        .mtls
        .post_form(&par_url(&p.mtls), &form, false)
        .await
        .unwrap();
    assert_refused(&r, 401, "invalid_client");
    // Another client's (CA-valid) certificate.
    let r = p
        .pkjwt
        .post_form(&par_url(&p.mtls), &form, true)
        .await
        .unwrap();
    assert_refused(&r, 401, "invalid_client");
    p.finish().await;
}

#[tokio::test]
async fn par_private_key_jwt_rejects_a_bad_client_assertion() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.pkjwt;
    let form = tpp.par_form(&Pkce::new(), "st", "n", &[]);
    assert_created(&tpp.post_form(&par_url(tpp), &form, true).await.unwrap());
    let t = wekeza_tests::now();
    let stranger = SigningKey::generate(Alg::ES256, tpp.client_id.clone()).unwrap();
    let foreign = stranger
        .sign_jwt(
            None,
            &json!({"iss": tpp.client_id, "sub": tpp.client_id, "aud": tpp.issuer, "jti": "x1", "iat": t, "exp": t + 60}),
        )
        .unwrap();
    let bad = [
        (
            "wrong audience",
            tpp.assertion_with(json!({"aud": "https://evil.example"})),
        ),
        (
            "expired",
            tpp.assertion_with(json!({"iat": t - 300, "exp": t - 200})),
        ),
        ("no exp", tpp.assertion_with(json!({"exp": null}))),
        (
            "other issuer",
            tpp.assertion_with(json!({"iss": "someone-else"})),
        ),
        ("signed by another key", foreign),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    for (what, assertion) in bad {
        let f = with(form.clone(), "client_assertion", &assertion);
        let r = tpp.post_form(&par_url(tpp), &f, true).await.unwrap();
        assert_eq!(r.status.as_u16(), 401, "{what}: {:?}", r.body);
        assert_refused(&r, 401, "invalid_client");
    }
    // Wrong assertion type.
    let f = with(
        tpp.par_form(&Pkce::new(), "st", "n", &[]),
        "client_assertion_type",
        "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
    );
    let r = tpp.post_form(&par_url(tpp), &f, true).await.unwrap();
    assert_refused(&r, 401, "invalid_client");
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_a_replayed_client_assertion() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.pkjwt;
    let form = tpp.par_form(&Pkce::new(), "st", "n", &[]);
    assert_created(&tpp.post_form(&par_url(tpp), &form, true).await.unwrap());
    let r = tpp.post_form(&par_url(tpp), &form, true).await.unwrap();
    assert_refused(&r, 401, "invalid_client");
    p.finish().await;
}

#[tokio::test]
async fn par_accepts_only_post() {
    let p = TestPlatform::spawn().await;
    let form = p.mtls.par_form(&Pkce::new(), "st", "n", &[]);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    for method in [reqwest::Method::GET, reqwest::Method::PUT] {
        let r = p
            .mtls
            .http
            .request(method.clone(), format!("{}?{query}", par_url(&p.mtls)))
            .send()
            .await
            .unwrap();
        let r = to_reply(r).await;
        assert_refused(&r, 405, "invalid_request");
        assert!(r.str("request_uri").is_none(), "{method}");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_requires_form_urlencoded_content_type() {
    let p = TestPlatform::spawn().await;
    let form = p.mtls.par_form(&Pkce::new(), "st", "n", &[]);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    // The same well-formed body is accepted with the right type…
    let ok = p
        .mtls
        .http
        .post(par_url(&p.mtls))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_created(&to_reply(ok).await);
    // …and refused with any other, or none.
    let json_body: serde_json::Map<String, Value> = form
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for (ct, body) in [
        (Some("application/json"), body.clone()),
        (
            Some("application/json"),
            Value::Object(json_body).to_string(),
        ),
        (Some("text/plain"), body.clone()),
        (Some("multipart/form-data; boundary=x"), body.clone()),
        (None, body.clone()),
    ] {
        let mut req = p.mtls.http.post(par_url(&p.mtls)).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = to_reply(req.send().await.unwrap()).await;
        assert_eq!(r.status.as_u16(), 400, "{ct:?}: {:?}", r.body);
        assert_refused(&r, 400, "invalid_request");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_response_type_token() {
    let p = TestPlatform::spawn().await;
    for r in par_both(&p, &[("response_type", "token")]).await {
        assert_refused(&r, 400, "unsupported_response_type");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_hybrid_response_type_code_id_token() {
    let p = TestPlatform::spawn().await;
    for rt in ["code id_token", "id_token", "code token"] {
        for r in par_both(&p, &[("response_type", rt)]).await {
            assert_refused(&r, 400, "unsupported_response_type");
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn par_requires_response_type() {
    let p = TestPlatform::spawn().await;
    for r in par_both(&p, &[("response_type", "")]).await {
        assert_refused(&r, 400, "invalid_request");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_requires_pkce() {
    let p = TestPlatform::spawn().await;
    for r in par_both(&p, &[("code_challenge", "")]).await {
        assert_refused(&r, 400, "invalid_request");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_plain_pkce() {
    let p = TestPlatform::spawn().await;
    // A plain challenge is the verifier itself: 43+ characters of the base64url alphabet.
    let pkce = Pkce::new();
    for tpp in [&p.pkjwt, &p.mtls] {
        let r = tpp
            .par(
                &pkce,
                "st",
                "n",
                &[
                    ("code_challenge", &pkce.verifier),
                    ("code_challenge_method", "plain"),
                ],
            )
            .await
            .unwrap();
        assert_refused(&r, 400, "invalid_request");
        let r = tpp
            .par(&pkce, "st", "n", &[("code_challenge_method", "s256")])
            .await
            .unwrap();
        assert_refused(&r, 400, "invalid_request");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_requires_code_challenge_method() {
    let p = TestPlatform::spawn().await;
    for r in par_both(&p, &[("code_challenge_method", "")]).await {
        assert_refused(&r, 400, "invalid_request");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_a_malformed_code_challenge() {
    let p = TestPlatform::spawn().await;
    let long = "a".repeat(44);
    for ch in [
        "abc",
        long.as_str(),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
    ] {
        for r in par_both(&p, &[("code_challenge", ch)]).await {
            assert_refused(&r, 400, "invalid_request");
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn par_requires_redirect_uri() {
    let p = TestPlatform::spawn().await;
    for r in par_both(&p, &[("redirect_uri", "")]).await {
        assert_refused(&r, 400, "invalid_request");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_an_unregistered_redirect_uri() {
    let p = TestPlatform::spawn().await;
    let registered = p.mtls.redirect_uri.clone();
    let variants = [
        "https://evil.example/cb".to_owned(),
        format!("{registered}/"),
        format!("{registered}?x=1"),
        format!("{registered}#f"),
        registered.replacen("https://", "http://", 1),
        registered.to_uppercase(),
    ];
    for uri in &variants {
        for r in par_both(&p, &[("redirect_uri", uri)]).await {
            assert_refused(&r, 400, "invalid_request");
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_a_nested_request_uri() {
    let p = TestPlatform::spawn().await;
    let real = assert_created(&p.mtls.par(&Pkce::new(), "st", "n", &[]).await.unwrap());
    for r in par_both(&p, &[("request_uri", &real)]).await {
        assert_refused(&r, 400, "invalid_request");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_request_objects_signed_with_unregistered_keys() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let pkce = Pkce::new();
        // Request objects are accepted (FAPI 2.0 MS, see message_signing.rs), but only
        // signed with a key in the client's registered jwks: this one is not (and the
        // tls_client_auth client has none). nbf is there so only the key is wrong.
        let key = SigningKey::generate(Alg::PS256, "ro").unwrap();
        let object = key
            .sign_jwt(
                Some("oauth-authz-req+jwt"),
                &json!({"iss": tpp.client_id, "aud": tpp.issuer, "client_id": tpp.client_id,
                        "response_type": "code", "redirect_uri": tpp.redirect_uri, "scope": tpp.scope,
                        "code_challenge": pkce.challenge, "code_challenge_method": "S256",
                        "nbf": wekeza_tests::now(), "exp": wekeza_tests::now() + 60}),
            )
            .unwrap();
        let r = tpp
            .par(&pkce, "st", "n", &[("request", &object)])
            .await
            .unwrap();
        assert_refused(&r, 400, "invalid_request_object");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_repeated_parameters() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        for (k, v) in [
            ("state", "other"),
            ("scope", "openid"),
            ("redirect_uri", tpp.redirect_uri.as_str()),
            ("code_challenge", &Pkce::new().challenge),
        ] {
            let mut f = tpp.par_form(&Pkce::new(), "st", "n", &[]);
            f.push((k.to_owned(), v.to_owned()));
            let r = tpp.post_form(&par_url(tpp), &f, true).await.unwrap();
            assert_eq!(r.status.as_u16(), 400, "repeated {k}: {:?}", r.body);
            assert_refused(&r, 400, "invalid_request");
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_scope_not_allowed_for_the_client() {
    let p = TestPlatform::spawn().await;
    for scope in [
        "openid admin",
        "openid accounts fundsconfirmations",
        "write:all",
    ] {
        for r in par_both(&p, &[("scope", scope)]).await {
            assert_refused(&r, 400, "invalid_scope");
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn par_accepts_a_64_char_nonce_and_a_1500_char_state() {
    let p = TestPlatform::spawn().await;
    let nonce: String = "n0Nc3-_.".repeat(8);
    assert_eq!(nonce.len(), 64);
    let state: String = "s7aTe-_.~".repeat(167);
    assert!(state.len() >= 1500);
    for tpp in [&p.pkjwt, &p.mtls] {
        let r = tpp.par(&Pkce::new(), &state, &nonce, &[]).await.unwrap();
        assert_created(&r);
    }
    // And they survive the whole flow intact.
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let ru = assert_created(&tpp.par(&pkce, &state, &nonce, &[]).await.unwrap());
    let otp = p.fresh_otp();
    let c = &p.kit.customer;
    let back = p
        .customer()
        .authorize(
            &tpp.authorize_url(&ru),
            &c.username,
            &c.password,
            &otp,
            true,
        )
        .await
        .unwrap();
    assert_eq!(param(&back, "state").as_deref(), Some(state.as_str()));
    let t = tpp
        .exchange_code(&param(&back, "code").unwrap(), &pkce)
        .await
        .unwrap();
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert_eq!(
        jwt_claims(t.str("id_token").unwrap())["nonce"],
        nonce.as_str()
    );
    p.finish().await;
}

#[tokio::test]
async fn par_issues_short_lived_unguessable_request_uris() {
    let p = TestPlatform::spawn().await;
    let mut seen = HashSet::new();
    for i in 0..20 {
        let tpp = if i % 2 == 0 { &p.pkjwt } else { &p.mtls };
        let r = tpp.par(&Pkce::new(), "st", "n", &[]).await.unwrap();
        let ru = assert_created(&r);
        assert_eq!(
            r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        let expires_in = r.body["expires_in"].as_i64().expect("expires_in");
        assert!(
            (30..600).contains(&expires_in),
            "expires_in {expires_in} must be ≥ 30 and < 600 (FAPI 2.0 §5.3.2.2-12)"
        );
        let random = ru
            .strip_prefix(REQUEST_URI_PREFIX)
            .unwrap_or_else(|| panic!("{ru} lacks the RFC 9126 prefix"));
        assert!(
            random
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{random}"
        );
        let bytes = fapi_jose::b64_decode(random).expect("base64url");
        assert!(bytes.len() >= 16, "at least 128 bits: {random}");
        assert!(seen.insert(random.to_owned()), "request_uri repeated");
    }
    p.finish().await;
}

#[tokio::test]
async fn par_rejects_a_huge_body_with_400() {
    let p = TestPlatform::spawn().await;
    // An unknown parameter is ignored, so a small padding is accepted…
    let small = "x".repeat(1000);
    assert_created(
        &p.mtls
            .par(&Pkce::new(), "st", "n", &[("padding", &small)])
            .await
            .unwrap(),
    );
    // …but more than 64 KiB of body is refused as a bad request, not a server error.
    for size in [65 * 1024, 1024 * 1024] {
        let pad = "x".repeat(size);
        for tpp in [&p.pkjwt, &p.mtls] {
            let r = tpp
                .par(&Pkce::new(), "st", "n", &[("padding", &pad)])
                .await
                .unwrap();
            assert_refused(&r, 400, "invalid_request");
        }
    }
    p.finish().await;
}
