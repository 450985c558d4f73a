//! Failed passkey verifications count toward the username's sign-in back-off, at the
//! authorization login and at the dashboard, like wrong passwords; every 429 back-off
//! page says when to come back (`Retry-After`). The customer holds a stored passkey;
//! the assertions sent are well formed but do not verify (not signed for this relying
//! party), which is what a stolen credential id or a tampered response looks like.

use authz_server::clock::Clock;
use authz_store::PasskeyRecord;
use fapi_conformance::Pkce;
use fapi_conformance::browser::Page;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wekeza_tests::TestPlatform;

const CRED_ID: &[u8] = b"wkz-test-passkey-1";

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A passkey of the sandbox customer (an ES256 public key in webauthn-rs's stored form).
async fn give_alice_a_passkey(p: &TestPlatform) -> String {
    let alice = p
        .state()
        .store
        .find_customer_by_username(&p.kit.customer.username)
        .await
        .unwrap()
        .unwrap();
    let coord = b64url(&[7u8; 32]);
    let credential = json!({"cred": {
        "cred_id": b64url(CRED_ID),
        "cred": {"type_": "ES256", "key": {"EC_EC2": {"curve": "SECP256R1", "x": coord, "y": coord}}},
        "counter": 0,
        "transports": null,
        "user_verified": true,
        "backup_eligible": false,
        "backup_state": false,
        "registration_policy": "required",
        "extensions": {},
        "attestation": {"data": "None", "metadata": "None"},
        "attestation_format": "none"
    }});
    p.state()
        .store
        .insert_passkey(&PasskeyRecord {
            credential_id: b64url(CRED_ID),
            customer_id: alice.id.clone(),
            name: "Test key".into(),
            credential,
            sign_count: 0,
            created_at: p.clock.now(),
            last_used_at: None,
        })
        .await
        .unwrap();
    alice.id
}

fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
}

/// The ceremony options the page hands to the browser.
fn options(page: &Page) -> Value {
    let i = page
        .html
        .find("data-options=\"")
        .unwrap_or_else(|| panic!("no ceremony on the page: {}", page.html))
        + "data-options=\"".len();
    let raw = &page.html[i..];
    serde_json::from_str(&unescape(&raw[..raw.find('"').unwrap()])).unwrap()
}

/// An assertion for the ceremony's challenge and the stored credential that does not
/// verify: authenticator data for another relying party, signature not over it.
fn bad_assertion(p: &TestPlatform, options: &Value) -> String {
    let challenge = options["publicKey"]["challenge"].as_str().unwrap();
    let client_data = json!({
        "type": "webauthn.get",
        "challenge": challenge,
        "origin": p.kit.issuer.trim_end_matches('/'),
        "crossOrigin": false
    })
    .to_string();
    let mut auth_data = vec![0u8; 32]; // not SHA-256 of our rp id
    auth_data.push(0x05); // user present, user verified
    auth_data.extend_from_slice(&1u32.to_be_bytes());
    json!({
        "id": b64url(CRED_ID),
        "rawId": b64url(CRED_ID),
        "type": "public-key",
        "response": {
            "authenticatorData": b64url(&auth_data),
            "clientDataJSON": b64url(client_data.as_bytes()),
            "signature": b64url(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
            "userHandle": null
        },
        "extensions": {}
    })
    .to_string()
}

fn retry_after(page: &Page) -> i64 {
    page.headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", page.headers))
}

/// The dashboard password sign-in of the sandbox customer: 429 + Retry-After while the
/// username is locked.
async fn dashboard_password_is_locked(p: &TestPlatform) -> i64 {
    let agent = p.customer();
    let login = agent.get("/account/login").await.unwrap();
    let r = agent
        .post(
            "/account/login",
            &[
                ("csrf", &login.csrf().unwrap()),
                ("username", &p.kit.customer.username),
                ("password", &p.kit.customer.password),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.html);
    retry_after(&r)
}

#[tokio::test]
async fn failed_passkey_verifications_at_the_authorization_login_lock_the_username() {
    let p = TestPlatform::spawn().await;
    let alice = give_alice_a_passkey(&p).await;
    let pkce = Pkce::new();
    let par = p.mtls.par(&pkce, "st", "n", &[]).await.unwrap();
    assert_eq!(par.status, 201, "{:?}", par.body);
    let agent = p.customer();
    agent
        .open(&p.mtls.authorize_url(par.str("request_uri").unwrap()))
        .await
        .unwrap();
    for n in 1..=5 {
        let page = agent.get("/login/passkey").await.unwrap();
        assert_eq!(page.status, 200, "{}", page.html);
        let csrf = page.csrf().unwrap();
        let started = agent
            .post(
                "/login/passkey",
                &[("csrf", &csrf), ("username", &p.kit.customer.username)],
            )
            .await
            .unwrap();
        assert_eq!(started.status, 200, "attempt {n}: {}", started.html);
        let answer = bad_assertion(&p, &options(&started));
        let r = agent
            .post(
                "/login/passkey/finish",
                &[("csrf", &csrf), ("credential", &answer)],
            )
            .await
            .unwrap();
        if n < 5 {
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "attempt {n}: {}",
                r.html
            );
        }
    }
    let ev = p.state().auth.list_auth_events(&alice, 20).await.unwrap();
    assert!(
        ev.iter()
            .filter(|e| e.method == "passkey" && e.outcome == "failure")
            .count()
            >= 5,
        "{ev:?}"
    );
    // The username is now locked everywhere, and the 429 says for how long.
    let wait = dashboard_password_is_locked(&p).await;
    assert!((1..=60).contains(&wait), "{wait}");
    // At the authorization login too (password form and passkey start).
    let pkce = Pkce::new();
    let par = p.mtls.par(&pkce, "st", "n", &[]).await.unwrap();
    let agent = p.customer();
    let login = agent
        .open(&p.mtls.authorize_url(par.str("request_uri").unwrap()))
        .await
        .unwrap();
    let csrf = login.csrf().unwrap();
    let r = agent
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", &p.kit.customer.username),
                ("password", &p.kit.customer.password),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.html);
    assert!((1..=60).contains(&retry_after(&r)));
    let r = agent
        .post(
            "/login/passkey",
            &[("csrf", &csrf), ("username", &p.kit.customer.username)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.html);
    assert!((1..=60).contains(&retry_after(&r)));
    // Later: the lock has run out, the password works again.
    p.clock.advance(61);
    let agent = p.customer();
    let login = agent.get("/account/login").await.unwrap();
    let r = agent
        .post(
            "/account/login",
            &[
                ("csrf", &login.csrf().unwrap()),
                ("username", &p.kit.customer.username),
                ("password", &p.kit.customer.password),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    p.finish().await;
}

#[tokio::test]
async fn failed_passkey_verifications_at_the_dashboard_lock_the_username() {
    let p = TestPlatform::spawn().await;
    give_alice_a_passkey(&p).await;
    let agent = p.customer();
    let mut last = None;
    for n in 1..=5 {
        let page = agent.get("/account/login/passkey").await.unwrap();
        assert_eq!(page.status, 200, "{}", page.html);
        let csrf = page.csrf().unwrap();
        let started = agent
            .post(
                "/account/login/passkey",
                &[("csrf", &csrf), ("username", &p.kit.customer.username)],
            )
            .await
            .unwrap();
        assert_eq!(started.status, 200, "attempt {n}: {}", started.html);
        let answer = bad_assertion(&p, &options(&started));
        let r = agent
            .post(
                "/account/login/passkey/finish",
                &[("csrf", &csrf), ("credential", &answer)],
            )
            .await
            .unwrap();
        last = Some(r);
    }
    // The fifth failure ends the sign-in with the back-off page.
    let r = last.unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.html);
    assert!((1..=60).contains(&retry_after(&r)));
    let wait = dashboard_password_is_locked(&p).await;
    assert!((1..=60).contains(&wait), "{wait}");
    p.finish().await;
}
