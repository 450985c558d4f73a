//! Resource-side checks (FAPI 2.0 §5.3.4, RFC 6750, RFC 8705 §3, RFC 7662, RFC 7009),
//! exercised at userinfo, introspection and revocation.

use crate::client_auth::{assert_error, call, client_credentials, flow, refresh, reply};
use fapi_conformance::Tpp;
use serde_json::json;
use wekeza_tests::{Reply, TestPlatform};

fn userinfo_url(tpp: &Tpp) -> String {
    tpp.endpoint("userinfo_endpoint")
}

async fn userinfo(tpp: &Tpp, at: &str, with_cert: bool) -> Reply {
    tpp.get_with_token(&userinfo_url(tpp), at, with_cert)
        .await
        .unwrap()
}

/// 401 `invalid_token` with an RFC 6750 §3 challenge.
#[track_caller]
fn assert_invalid_token(r: &Reply, what: &str) {
    assert_error(r, 401, "invalid_token", what);
    assert_bearer_challenge(r, what);
}

#[track_caller]
fn assert_bearer_challenge(r: &Reply, what: &str) {
    let h = r
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(h.starts_with("Bearer"), "{what}: {h}");
}

async fn introspect(p: &TestPlatform, caller: &Tpp, token: &str) -> Reply {
    let r = call(p, caller, "introspection_endpoint", &[("token", token)]).await;
    assert_eq!(r.status, 200, "introspection: {:?}", r.body);
    r
}

async fn revoke(p: &TestPlatform, caller: &Tpp, token: &str) {
    let r = call(p, caller, "revocation_endpoint", &[("token", token)]).await;
    assert_eq!(r.status, 200, "revocation: {:?}", r.body);
}

#[tokio::test]
async fn userinfo_with_token_over_other_certificate_is_invalid_token() {
    let p = TestPlatform::spawn().await;
    let at = flow(&p, &p.pkjwt)
        .await
        .str("access_token")
        .unwrap()
        .to_owned();
    assert_eq!(userinfo(&p.pkjwt, &at, true).await.status, 200, "control");
    // The mtls TPP's certificate is valid (same CA) but not the one the token is bound to.
    let r = userinfo(&p.mtls, &at, true).await;
    assert_invalid_token(&r, "other certificate");
    // Also a fresh certificate with the pkjwt TPP's own subject.
    let ca = crate::client_auth::sandbox_ca(&p);
    let twin = ca
        .issue_client(&p.pkjwt.client_id, "Wekeza Sandbox TPP", None)
        .unwrap();
    let r = userinfo(
        &crate::client_auth::with_cert(&p, &p.pkjwt, &twin),
        &at,
        true,
    )
    .await;
    assert_invalid_token(&r, "same subject, other certificate");
    p.finish().await;
}

#[tokio::test]
async fn userinfo_without_certificate_is_invalid_token() {
    let p = TestPlatform::spawn().await;
    let at = flow(&p, &p.pkjwt)
        .await
        .str("access_token")
        .unwrap()
        .to_owned();
    assert_eq!(userinfo(&p.pkjwt, &at, true).await.status, 200, "control");
    let r = userinfo(&p.pkjwt, &at, false).await;
    assert_invalid_token(&r, "no certificate");
    p.finish().await;
}

#[tokio::test]
async fn userinfo_refuses_access_token_in_query() {
    let p = TestPlatform::spawn().await;
    let at = flow(&p, &p.pkjwt)
        .await
        .str("access_token")
        .unwrap()
        .to_owned();
    let url = format!(
        "{}?access_token={}",
        userinfo_url(&p.pkjwt),
        fapi_conformance::tpp::enc(&at)
    );
    // Only the query carries the token, over the right certificate.
    let r = reply(p.pkjwt.http.get(&url).send().await.unwrap()).await;
    assert!(
        r.status == 400 || r.status == 401,
        "query token: {} {:?}",
        r.status,
        r.body
    );
    assert_eq!(
        r.error(),
        if r.status == 400 {
            "invalid_request"
        } else {
            "invalid_token"
        }
    );
    // And with a valid header as well: two methods at once is still refused.
    let r = p.pkjwt.get_with_token(&url, &at, true).await.unwrap();
    assert_error(&r, 400, "invalid_request", "query and header");
    // Control: the same token in the header works.
    assert_eq!(userinfo(&p.pkjwt, &at, true).await.status, 200);
    p.finish().await;
}

#[tokio::test]
async fn userinfo_accepts_bearer_scheme_in_any_case() {
    let p = TestPlatform::spawn().await;
    let at = flow(&p, &p.pkjwt)
        .await
        .str("access_token")
        .unwrap()
        .to_owned();
    for scheme in ["bearer", "BEARER", "bEaReR", "Bearer"] {
        let r = p
            .pkjwt
            .http
            .get(userinfo_url(&p.pkjwt))
            .header("authorization", format!("{scheme} {at}"))
            .send()
            .await
            .unwrap();
        let r = reply(r).await;
        assert_eq!(r.status, 200, "{scheme}: {:?}", r.body);
    }
    p.finish().await;
}

#[tokio::test]
async fn userinfo_refuses_two_authorization_headers() {
    let p = TestPlatform::spawn().await;
    let at = flow(&p, &p.pkjwt)
        .await
        .str("access_token")
        .unwrap()
        .to_owned();
    assert_eq!(userinfo(&p.pkjwt, &at, true).await.status, 200, "control");
    // Even the same valid token twice (RFC 6750 §3.1: a repeated parameter).
    let r = p
        .pkjwt
        .http
        .get(userinfo_url(&p.pkjwt))
        .header("authorization", format!("Bearer {at}"))
        .header("authorization", format!("Bearer {at}"))
        .send()
        .await
        .unwrap();
    let r = reply(r).await;
    assert_error(&r, 400, "invalid_request", "two Authorization headers");
    p.finish().await;
}

#[tokio::test]
async fn userinfo_refuses_expired_access_token() {
    let p = TestPlatform::spawn().await;
    let at = flow(&p, &p.pkjwt)
        .await
        .str("access_token")
        .unwrap()
        .to_owned();
    p.clock.advance(295);
    assert_eq!(userinfo(&p.pkjwt, &at, true).await.status, 200, "control");
    p.clock.advance(6);
    let r = userinfo(&p.pkjwt, &at, true).await;
    assert_invalid_token(&r, "expired");
    p.finish().await;
}

#[tokio::test]
async fn userinfo_refuses_tampered_access_token() {
    let p = TestPlatform::spawn().await;
    let at = flow(&p, &p.pkjwt)
        .await
        .str("access_token")
        .unwrap()
        .to_owned();
    assert_eq!(userinfo(&p.pkjwt, &at, true).await.status, 200, "control");
    let parts: Vec<&str> = at.split('.').collect();
    // A meaningful edit: longer life and more scope, original signature kept.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&fapi_jose::b64_decode(parts[1]).unwrap()).unwrap();
    claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    claims["scope"] = json!("openid profile accounts payments");
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        fapi_jose::b64(&serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    assert_invalid_token(&userinfo(&p.pkjwt, &edited, true).await, "edited claims");
    // One character of the payload flipped.
    let mut flipped = parts[1].as_bytes().to_vec();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        String::from_utf8(flipped).unwrap(),
        parts[2]
    );
    assert_invalid_token(&userinfo(&p.pkjwt, &flipped, true).await, "flipped char");
    // Signature stripped.
    let unsigned = format!("{}.{}.", parts[0], parts[1]);
    assert_invalid_token(&userinfo(&p.pkjwt, &unsigned, true).await, "no signature");
    p.finish().await;
}

#[tokio::test]
async fn userinfo_with_client_credentials_token_is_insufficient_scope() {
    let p = TestPlatform::spawn().await;
    let cc = client_credentials(&p, &p.mtls, "accounts payments").await;
    assert_eq!(cc.status, 200, "{:?}", cc.body);
    let r = userinfo(&p.mtls, cc.str("access_token").unwrap(), true).await;
    assert_error(&r, 403, "insufficient_scope", "no openid");
    assert_bearer_challenge(&r, "no openid");
    p.finish().await;
}

#[tokio::test]
async fn introspection_requires_client_authentication() {
    let p = TestPlatform::spawn().await;
    let cc = client_credentials(&p, &p.mtls, "accounts").await;
    let at = cc.str("access_token").unwrap();
    assert_eq!(
        introspect(&p, &p.mtls, at).await.body["active"],
        true,
        "control"
    );
    let url = p.mtls.endpoint("introspection_endpoint");
    let bare = [("token".to_owned(), at.to_owned())];
    // No client_id and no assertion, with and without a certificate.
    for with_cert in [true, false] {
        let r = p.mtls.post_form(&url, &bare, with_cert).await.unwrap();
        assert_error(&r, 401, "invalid_client", &format!("cert={with_cert}"));
    }
    // A tls_client_auth client_id without the certificate.
    let f = [
        ("client_id".to_owned(), p.mtls.client_id.clone()),
        ("token".to_owned(), at.to_owned()),
    ];
    let r = p.mtls.post_form(&url, &f, false).await.unwrap();
    assert_error(&r, 401, "invalid_client", "client_id, no certificate");
    p.finish().await;
}

#[tokio::test]
async fn introspection_of_another_clients_token_is_inactive() {
    let p = TestPlatform::spawn().await;
    let t = flow(&p, &p.pkjwt).await;
    let at = t.str("access_token").unwrap();
    let rt = t.str("refresh_token").unwrap();
    // Controls: the owner sees both as active.
    assert_eq!(introspect(&p, &p.pkjwt, at).await.body["active"], true);
    assert_eq!(introspect(&p, &p.pkjwt, rt).await.body["active"], true);
    // Another (non resource server) client learns nothing.
    for token in [at, rt] {
        let r = introspect(&p, &p.mtls, token).await;
        assert_eq!(r.body, json!({"active": false}));
    }
    p.finish().await;
}

#[tokio::test]
async fn revoked_access_token_fails_at_userinfo() {
    let p = TestPlatform::spawn().await;
    let at = flow(&p, &p.pkjwt)
        .await
        .str("access_token")
        .unwrap()
        .to_owned();
    assert_eq!(userinfo(&p.pkjwt, &at, true).await.status, 200, "control");
    revoke(&p, &p.pkjwt, &at).await;
    assert_invalid_token(&userinfo(&p.pkjwt, &at, true).await, "revoked");
    assert_eq!(introspect(&p, &p.pkjwt, &at).await.body["active"], false);
    p.finish().await;
}

#[tokio::test]
async fn revocation_by_another_client_does_nothing() {
    let p = TestPlatform::spawn().await;
    let t = flow(&p, &p.pkjwt).await;
    let at = t.str("access_token").unwrap();
    let rt = t.str("refresh_token").unwrap();
    // RFC 7009 §2.1: the other client gets 200, and nothing happens.
    revoke(&p, &p.mtls, at).await;
    revoke(&p, &p.mtls, rt).await;
    assert_eq!(userinfo(&p.pkjwt, at, true).await.status, 200);
    assert_eq!(introspect(&p, &p.pkjwt, at).await.body["active"], true);
    let r = refresh(&p, &p.pkjwt, rt).await;
    assert_eq!(
        r.status, 200,
        "refresh after foreign revocation: {:?}",
        r.body
    );
    p.finish().await;
}

#[tokio::test]
async fn revoked_consent_kills_access_and_refresh_tokens() {
    let p = TestPlatform::spawn().await;
    let t = flow(&p, &p.pkjwt).await;
    let at = t.str("access_token").unwrap();
    let rt = t.str("refresh_token").unwrap();
    let consent_id = t.str("consent_id").unwrap();
    // Controls.
    assert_eq!(userinfo(&p.pkjwt, at, true).await.status, 200);
    let r = refresh(&p, &p.pkjwt, rt).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let refreshed_at = r.str("access_token").unwrap().to_owned();

    authz_server::routes::token::revoke_consent(p.state(), consent_id, "test")
        .await
        .unwrap();
    assert_invalid_token(&userinfo(&p.pkjwt, at, true).await, "original AT");
    assert_invalid_token(
        &userinfo(&p.pkjwt, &refreshed_at, true).await,
        "refreshed AT",
    );
    let r = refresh(&p, &p.pkjwt, rt).await;
    assert_error(&r, 400, "invalid_grant", "refresh after consent revocation");
    assert_eq!(introspect(&p, &p.pkjwt, at).await.body["active"], false);
    assert_eq!(introspect(&p, &p.pkjwt, rt).await.body["active"], false);
    p.finish().await;
}
