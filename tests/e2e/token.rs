//! The token endpoint refusing what it must (RFC 6749 §5.2, RFC 8705 §3, FAPI 2.0
//! §5.3.2.1 and §5.4.1): certificate binding, grant types, scopes, refresh-token misuse,
//! token lifetime and entropy, malformed bodies.

use crate::client_auth::{
    assert_error, auth, client_credentials, code, encode, flow, form, refresh, sandbox_ca,
    server_now, token, with_cert,
};
use fapi_conformance::Tpp;
use serde_json::Value;
use wekeza_tests::{Reply, TestPlatform, jwt_claims};

fn jwt_header(jwt: &str) -> Value {
    let h = jwt.split('.').next().unwrap();
    serde_json::from_slice(&fapi_jose::b64_decode(h).unwrap()).unwrap()
}

/// POST `form` to the token endpoint without a client certificate.
async fn token_no_cert(tpp: &Tpp, form: &[(String, String)]) -> Reply {
    tpp.post_form(&tpp.endpoint("token_endpoint"), form, false)
        .await
        .unwrap()
}

/// POST a raw body to the token endpoint over `tpp`'s certificate.
async fn token_raw(tpp: &Tpp, content_type: &str, body: Vec<u8>) -> Reply {
    let r = tpp
        .http
        .post(tpp.endpoint("token_endpoint"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    crate::client_auth::reply(r).await
}

#[tokio::test]
async fn token_endpoint_without_client_certificate_issues_no_token() {
    let p = TestPlatform::spawn().await;
    let cc = [("grant_type", "client_credentials"), ("scope", "accounts")];
    // Controls: with the certificate both clients get tokens.
    for tpp in [&p.pkjwt, &p.mtls] {
        let r = client_credentials(&p, tpp, "accounts").await;
        assert_eq!(r.status, 200, "control {}: {:?}", tpp.client_id, r.body);
    }
    // private_key_jwt authenticates without a certificate, but nothing could bind the token.
    let r = token_no_cert(&p.pkjwt, &form(&p, &p.pkjwt, &cc)).await;
    assert_error(&r, 400, "invalid_request", "pkjwt client_credentials");
    let (c, pkce) = code(&p, &p.pkjwt).await;
    let f = form(
        &p,
        &p.pkjwt,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", &p.pkjwt.redirect_uri),
            ("code_verifier", &pkce.verifier),
        ],
    );
    let r = token_no_cert(&p.pkjwt, &f).await;
    assert_error(&r, 400, "invalid_request", "pkjwt authorization_code");
    let rt = flow(&p, &p.pkjwt)
        .await
        .str("refresh_token")
        .unwrap()
        .to_owned();
    let f = form(
        &p,
        &p.pkjwt,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    );
    let r = token_no_cert(&p.pkjwt, &f).await;
    assert_error(&r, 400, "invalid_request", "pkjwt refresh_token");

    // tls_client_auth cannot even authenticate.
    let r = token_no_cert(&p.mtls, &form(&p, &p.mtls, &cc)).await;
    assert_error(&r, 401, "invalid_client", "mtls client_credentials");
    let (c, pkce) = code(&p, &p.mtls).await;
    let f = form(
        &p,
        &p.mtls,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("redirect_uri", &p.mtls.redirect_uri),
            ("code_verifier", &pkce.verifier),
        ],
    );
    let r = token_no_cert(&p.mtls, &f).await;
    assert_error(&r, 401, "invalid_client", "mtls authorization_code");
    p.finish().await;
}

#[tokio::test]
async fn unsupported_grant_types_are_unsupported_grant_type() {
    let p = TestPlatform::spawn().await;
    let c = &p.kit.customer;
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // ROPC must be rejected (FAPI 2.0 §5.3.2.1-2), even with the right password.
        (
            "password",
            vec![("username", &c.username), ("password", &c.password)],
        ),
        ("token", vec![]),
        ("implicit", vec![]),
        (
            "urn:ietf:params:oauth:grant-type:device_code",
            vec![("device_code", "abc")],
        ),
        (
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            vec![("assertion", "a.b.c")],
        ),
        (
            "urn:ietf:params:oauth:grant-type:token-exchange",
            vec![("subject_token", "x")],
        ),
        // Grant type names are case-sensitive.
        ("CLIENT_CREDENTIALS", vec![("scope", "accounts")]),
    ];
    for tpp in [&p.pkjwt, &p.mtls] {
        let ok = client_credentials(&p, tpp, "accounts").await;
        assert_eq!(ok.status, 200, "control: {:?}", ok.body);
        for (grant, extra) in &cases {
            let mut params = vec![("grant_type", *grant)];
            params.extend(extra.iter().copied());
            let r = token(&p, tpp, &params).await;
            assert_error(
                &r,
                400,
                "unsupported_grant_type",
                &format!("{}: {grant}", tpp.client_id),
            );
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn missing_grant_type_is_invalid_request() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let r = token(&p, tpp, &[("scope", "accounts")]).await;
        assert_error(&r, 400, "invalid_request", &tpp.client_id);
    }
    p.finish().await;
}

#[tokio::test]
async fn repeated_parameter_is_invalid_request() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let r = token(
            &p,
            tpp,
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
                ("scope", "accounts"),
            ],
        )
        .await;
        assert_error(&r, 400, "invalid_request", &tpp.client_id);
    }
    p.finish().await;
}

#[tokio::test]
async fn refresh_token_over_other_certificate_is_invalid_grant() {
    let p = TestPlatform::spawn().await;
    let ca = sandbox_ca(&p);
    for tpp in [&p.pkjwt, &p.mtls] {
        let rt = flow(&p, tpp).await.str("refresh_token").unwrap().to_owned();
        // Same client, same registered subject, another CA-issued certificate: the client
        // authenticates, but the refresh token is bound to the first certificate.
        let second = ca
            .issue_client(&tpp.client_id, "Wekeza Sandbox TPP", None)
            .unwrap();
        let moved = with_cert(&p, tpp, &second);
        let ok = client_credentials(&p, &moved, "accounts").await;
        assert_eq!(ok.status, 200, "the second certificate authenticates");
        let r = refresh(&p, &moved, &rt).await;
        assert_error(&r, 400, "invalid_grant", &tpp.client_id);
        // Control: over the original certificate it still works.
        let r = refresh(&p, tpp, &rt).await;
        assert_eq!(r.status, 200, "{}: {:?}", tpp.client_id, r.body);
    }
    p.finish().await;
}

#[tokio::test]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let p = TestPlatform::spawn().await;
    let a = flow(&p, &p.pkjwt)
        .await
        .str("refresh_token")
        .unwrap()
        .to_owned();
    let b = flow(&p, &p.mtls)
        .await
        .str("refresh_token")
        .unwrap()
        .to_owned();
    let r = refresh(&p, &p.mtls, &a).await;
    assert_error(&r, 400, "invalid_grant", "pkjwt's RT used by mtls");
    let r = refresh(&p, &p.pkjwt, &b).await;
    assert_error(&r, 400, "invalid_grant", "mtls's RT used by pkjwt");
    // Even over the certificate the token is bound to: the pkjwt client authenticates by
    // assertion and presents the mtls TPP's certificate, so only the client check stops it.
    let mut thief = p.pkjwt.clone();
    thief.http = p.mtls.http.clone();
    assert_eq!(
        crate::client_auth::client_credentials(&p, &thief, "accounts")
            .await
            .status,
        200,
        "the thief authenticates over that certificate"
    );
    let r = refresh(&p, &thief, &b).await;
    assert_error(
        &r,
        400,
        "invalid_grant",
        "mtls's RT by pkjwt over mtls's certificate",
    );
    // Controls: each client's own refresh token works.
    assert_eq!(refresh(&p, &p.pkjwt, &a).await.status, 200);
    assert_eq!(refresh(&p, &p.mtls, &b).await.status, 200);
    p.finish().await;
}

#[tokio::test]
async fn refresh_with_broader_scope_is_invalid_scope() {
    let p = TestPlatform::spawn().await;
    let t = flow(&p, &p.pkjwt).await;
    let rt = t.str("refresh_token").unwrap();
    let mut granted: Vec<&str> = t.str("scope").unwrap().split(' ').collect();
    granted.sort_unstable();
    assert_eq!(granted, ["accounts", "openid", "payments"]);
    for scope in [
        // Registered for the client, but not granted by the customer.
        "openid accounts payments profile",
        "offline_access",
        // Not registered at all.
        "accounts transfers",
    ] {
        let r = token(
            &p,
            &p.pkjwt,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("scope", scope),
            ],
        )
        .await;
        assert_error(&r, 400, "invalid_scope", scope);
    }
    // Control: narrowing is allowed.
    let r = token(
        &p,
        &p.pkjwt,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "accounts"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.str("scope"), Some("accounts"));
    assert_eq!(
        jwt_claims(r.str("access_token").unwrap())["scope"],
        "accounts"
    );
    p.finish().await;
}

#[tokio::test]
async fn revoked_refresh_token_is_invalid_grant() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let rt = flow(&p, tpp).await.str("refresh_token").unwrap().to_owned();
        assert_eq!(refresh(&p, tpp, &rt).await.status, 200, "control");
        let r = crate::client_auth::call(&p, tpp, "revocation_endpoint", &[("token", &rt)]).await;
        assert_eq!(r.status, 200, "revocation: {:?}", r.body);
        let r = refresh(&p, tpp, &rt).await;
        assert_error(&r, 400, "invalid_grant", &tpp.client_id);
    }
    p.finish().await;
}

#[tokio::test]
async fn client_credentials_with_openid_is_invalid_scope() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let ok = client_credentials(&p, tpp, "accounts").await;
        assert_eq!(ok.status, 200, "control: {:?}", ok.body);
        for scope in ["openid", "openid accounts"] {
            let r = client_credentials(&p, tpp, scope).await;
            assert_error(
                &r,
                400,
                "invalid_scope",
                &format!("{}: {scope}", tpp.client_id),
            );
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn client_credentials_with_unregistered_scope_is_invalid_scope() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let ok = client_credentials(&p, tpp, "accounts payments").await;
        assert_eq!(ok.status, 200, "control: {:?}", ok.body);
        for scope in ["transfers", "accounts transfers", "ACCOUNTS"] {
            let r = client_credentials(&p, tpp, scope).await;
            assert_error(
                &r,
                400,
                "invalid_scope",
                &format!("{}: {scope}", tpp.client_id),
            );
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn access_token_lifetime_is_300_seconds_and_typed_at_jwt() {
    let p = TestPlatform::spawn().await;
    let code_flow = flow(&p, &p.pkjwt).await;
    let refreshed = refresh(&p, &p.pkjwt, code_flow.str("refresh_token").unwrap()).await;
    let cc = client_credentials(&p, &p.mtls, "accounts").await;
    for (what, r) in [
        ("authorization_code", &code_flow),
        ("refresh_token", &refreshed),
        ("client_credentials", &cc),
    ] {
        assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        assert_eq!(r.body["expires_in"], 300, "{what}");
        assert_eq!(r.str("token_type"), Some("Bearer"), "{what}");
        let at = r.str("access_token").unwrap();
        assert_eq!(jwt_header(at)["typ"], "at+jwt", "{what}");
        let c = jwt_claims(at);
        let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
        assert_eq!(exp - iat, 300, "{what}");
        assert!((iat - server_now(&p)).abs() <= 5, "{what}: iat is now");
    }
    p.finish().await;
}

#[tokio::test]
async fn tokens_carry_at_least_128_bits_of_entropy() {
    let p = TestPlatform::spawn().await;
    let one = flow(&p, &p.pkjwt).await;
    let two = flow(&p, &p.pkjwt).await;
    let mut jtis = Vec::new();
    for r in [&one, &two] {
        let rt = r.str("refresh_token").unwrap();
        let raw = fapi_jose::b64_decode(rt).expect("refresh token is base64url");
        assert!(raw.len() >= 16, "refresh token has {} bytes", raw.len());
        let at = r.str("access_token").unwrap();
        let jti = jwt_claims(at)["jti"].as_str().unwrap().to_owned();
        let raw = fapi_jose::b64_decode(&jti).expect("jti is base64url");
        assert!(raw.len() >= 16, "access token jti has {} bytes", raw.len());
        // A signed JWT carrying that jti: far longer than 128 bits of base64url.
        assert!(
            at.len() >= 22 + jti.len(),
            "access token length {}",
            at.len()
        );
        jtis.push(jti);
    }
    assert_ne!(one.str("refresh_token"), two.str("refresh_token"));
    assert_ne!(one.str("access_token"), two.str("access_token"));
    assert_ne!(jtis[0], jtis[1]);
    p.finish().await;
}

#[tokio::test]
async fn malformed_token_request_bodies_are_400_json() {
    let p = TestPlatform::spawn().await;
    let t = &p.mtls;
    // A request that succeeds on its own, then the same request spoiled in one way.
    let good = encode(&{
        let mut f = auth(&p, t);
        f.push(("grant_type".into(), "client_credentials".into()));
        f.push(("scope".into(), "accounts".into()));
        f
    });
    let ctype = "application/x-www-form-urlencoded";
    let r = token_raw(t, ctype, good.clone().into_bytes()).await;
    assert_eq!(r.status, 200, "control: {:?}", r.body);

    let mut garbage_tail = good.clone().into_bytes();
    garbage_tail.extend_from_slice(b"&\xff\xfe\x00\x80=\xc3\x28\x9f");
    let garbage_only: Vec<u8> = (0u8..=255).rev().cycle().take(4096).collect();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("binary garbage appended", ctype, garbage_tail),
        ("binary garbage only", ctype, garbage_only),
        (
            "invalid percent-encoding",
            ctype,
            format!("{good}&state=%zz").into_bytes(),
        ),
        (
            "truncated percent-encoding",
            ctype,
            format!("{good}&state=ab%2").into_bytes(),
        ),
        (
            "percent-encoded invalid UTF-8",
            ctype,
            format!("{good}&state=%ff%fe").into_bytes(),
        ),
        (
            "100 KB body",
            ctype,
            format!("{good}&state={}", "a".repeat(100 * 1024)).into_bytes(),
        ),
        (
            "JSON body",
            "application/json",
            serde_json::to_vec(&serde_json::json!({"grant_type": "client_credentials"})).unwrap(),
        ),
    ];
    for (what, ct, body) in cases {
        let r = token_raw(t, ct, body).await;
        assert_error(&r, 400, "invalid_request", what);
    }
    // The server is still fine afterwards.
    let r = token_raw(t, ctype, good.into_bytes()).await;
    assert_eq!(r.status, 200, "after: {:?}", r.body);
    p.finish().await;
}
