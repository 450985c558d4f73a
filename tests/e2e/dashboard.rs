//! The customer's consent dashboard (`/account`) through a no-JS HTTPS agent: its own
//! sign-in (password, then a TOTP code; wrong ones refused; lock-out), the list of the
//! customer's consents with permissions and picked accounts, withdrawal (CSRF-checked,
//! only the customer's own consent) and its effect on the TPP: resource calls refused
//! within the RS's one-second consent cache, refresh refused.

use authz_server::clock::Clock;
use authz_store::{AuditEntry, ConsentRecord, ConsentStatus, CustomerRecord};
use fapi_conformance::browser::{Customer, Page, totp};
use fapi_conformance::{Pkce, Tpp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wekeza_tests::{Reply, TestPlatform, query_param};

const AISP: &str = "/open-banking/v4.0/aisp";
const MTLS_CLIENT_NAME: &str = "Sandbox Payments App";

fn rs(p: &TestPlatform, path: &str) -> String {
    format!(
        "{}{AISP}{path}",
        p.kit.resource_base_url.trim_end_matches('/')
    )
}

async fn cc_token(tpp: &Tpp) -> String {
    let t = tpp.client_credentials("accounts").await.unwrap();
    assert_eq!(t.status, 200, "{:?}", t.body);
    t.str("access_token").unwrap().to_owned()
}

/// An account-access intent, authorised by the sandbox customer for their first
/// account: (consent id, picked account id, token response).
async fn authorised_intent(p: &TestPlatform, tpp: &Tpp) -> (String, String, Reply) {
    let cc = cc_token(tpp).await;
    let body = json!({
        "Data": {
            "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail",
                            "ReadTransactionsCredits", "ReadTransactionsDebits"],
            "ExpirationDateTime": "2099-01-01T00:00:00Z",
            "TransactionFromDateTime": "2020-01-01T00:00:00Z",
            "TransactionToDateTime": "2099-01-01T00:00:00Z"
        },
        "Risk": {}
    });
    let r = tpp
        .resource(
            Method::POST,
            &rs(p, "/account-access-consents"),
            &cc,
            Some(&body),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    let claims = json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}})
        .to_string();
    let pkce = Pkce::new();
    let par = tpp
        .par(
            &pkce,
            "st-dash",
            "n-dash",
            &[("scope", "openid accounts"), ("claims", &claims)],
        )
        .await
        .unwrap();
    assert_eq!(par.status, 201, "{:?}", par.body);
    let url = tpp.authorize_url(par.str("request_uri").unwrap());
    let agent = p.customer();
    let login = agent.open(&url).await.unwrap();
    let c = &p.kit.customer;
    let otp = p.fresh_otp();
    let consent = agent
        .sign_in(&login, &c.username, &c.password, &otp)
        .await
        .unwrap();
    let picked = consent.account_choices()[0].clone();
    let back = agent
        .decide_accounts(&consent, true, &[picked.as_str()])
        .await
        .unwrap();
    let code = query_param(&back, "code").expect("code");
    let t = tpp.exchange_code(&code, &pkce).await.unwrap();
    assert_eq!(t.status, 200, "{:?}", t.body);
    (id, picked, t)
}

fn location(page: &Page) -> &str {
    page.location.as_deref().unwrap_or_default()
}

fn session_cookie(page: &Page) -> Option<String> {
    page.headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("__Host-wkz_dash=") && !v.contains("Max-Age=0"))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// Sign in to the dashboard; asserts every step. Returns the dashboard page and the
/// session cookie (`name=value`).
async fn sign_in(agent: &Customer, username: &str, password: &str, otp: &str) -> (Page, String) {
    let first = agent.get("/account").await.unwrap();
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&first), "/account/login");
    let login = agent.get("/account/login").await.unwrap();
    assert_eq!(login.status, 200, "{}", login.html);
    let set = login
        .headers
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for attr in [
        "__Host-wkz_dash=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(set.contains(attr), "cookie {set} lacks {attr}");
    }
    let csrf = login.csrf().unwrap();
    let r = agent
        .post(
            "/account/login",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(location(&r), "/account/login/otp");
    let page = agent.get("/account/login/otp").await.unwrap();
    assert_eq!(page.status, 200);
    let r = agent
        .post(
            "/account/login/otp",
            &[("csrf", &page.csrf().unwrap()), ("otp", otp)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(location(&r), "/account");
    let cookie = session_cookie(&r).expect("a new session cookie once signed in");
    let dash = agent.get("/account").await.unwrap();
    assert_eq!(dash.status, 200, "{}", dash.html);
    (dash, cookie)
}

fn card_of<'a>(html: &'a str, consent_id: &str) -> &'a str {
    let mark = format!("data-consent-id=\"{consent_id}\"");
    let i = html
        .find(&mark)
        .unwrap_or_else(|| panic!("{consent_id} not listed"));
    let rest = &html[i..];
    &rest[..rest.find("</article>").unwrap_or(rest.len())]
}

async fn status_of(p: &TestPlatform, id: &str) -> ConsentStatus {
    p.state()
        .store
        .find_consent(id)
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn sign_in_list_and_revoke_cuts_the_tpp_off() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let (id, picked, t) = authorised_intent(&p, tpp).await;
    let at = t.str("access_token").unwrap().to_owned();
    let balances = rs(&p, "/balances");
    let ok = tpp
        .resource(Method::GET, &balances, &at, None)
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{:?}", ok.body);

    let c = &p.kit.customer;
    let agent = p.customer();
    // Wrong password, then wrong code: refused, the form shown again with an error.
    let login = agent.get("/account/login").await.unwrap();
    let csrf = login.csrf().unwrap();
    let r = agent
        .post(
            "/account/login",
            &[
                ("csrf", &csrf),
                ("username", &c.username),
                ("password", &format!("{}x", c.password)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.html.contains("id=\"error\""), "{}", r.html);
    let r = agent
        .post(
            "/account/login",
            &[
                ("csrf", &csrf),
                ("username", &c.username),
                ("password", &c.password),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let now = p.clock.now();
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|g| (-2..=2).all(|k| totp(&c.totp_secret, now + k * 30).unwrap() != *g))
        .unwrap();
    let r = agent
        .post("/account/login/otp", &[("csrf", &csrf), ("otp", &wrong)])
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(r.html.contains("id=\"error\""), "{}", r.html);
    // Not signed in yet.
    assert_eq!(
        location(&agent.get("/account").await.unwrap()),
        "/account/login"
    );
    let otp = p.fresh_otp();
    let r = agent
        .post("/account/login/otp", &[("csrf", &csrf), ("otp", &otp)])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(location(&r), "/account");
    // The same code is not accepted twice (a second agent replaying it).
    let replay = p.customer();
    let l = replay.get("/account/login").await.unwrap();
    let rc = l.csrf().unwrap();
    replay
        .post(
            "/account/login",
            &[
                ("csrf", &rc),
                ("username", &c.username),
                ("password", &c.password),
            ],
        )
        .await
        .unwrap();
    let r2 = replay
        .post("/account/login/otp", &[("csrf", &rc), ("otp", &otp)])
        .await
        .unwrap();
    assert_eq!(r2.status, 401, "a TOTP step is accepted once");

    // The TPP's /balances call above is recorded as a use (off the request path).
    for _ in 0..100 {
        if p.state()
            .auth
            .consent_last_used(&id)
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The dashboard: the consent, its provider, permissions in words, the picked account.
    let dash = agent.get("/account").await.unwrap();
    assert_eq!(dash.status, 200, "{}", dash.html);
    let csp = dash
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!dash.html.contains("<script"));
    assert!(dash.html.contains(MTLS_CLIENT_NAME), "{}", dash.html);
    let card = card_of(&dash.html, &id);
    assert!(card.contains("data-status=\"active\""), "{card}");
    assert!(
        card.contains("The balances of the accounts you pick"),
        "{card}"
    );
    assert!(card.contains("Money going out of your accounts"), "{card}");
    let account = p.state().bank.account(&picked).await.unwrap().unwrap();
    assert!(card.contains(&account.nickname), "{card}");
    assert!(card.contains("Access given"), "{card}");
    assert!(
        card.contains("<dd class=\"last-used\"><time datetime="),
        "the recorded last use: {card}"
    );
    let revoke_url = format!("/account/consents/{id}/revoke");
    assert!(card.contains(&revoke_url), "{card}");

    // The confirmation step, then a POST without / with a wrong CSRF token: refused.
    let confirm = agent.get(&revoke_url).await.unwrap();
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    assert!(confirm.html.contains("id=\"confirm-revoke\""));
    let csrf = confirm.csrf().unwrap();
    let r = agent.post(&revoke_url, &[]).await.unwrap();
    assert_eq!(r.status, 403, "{}", r.html);
    let r = agent
        .post(&revoke_url, &[("csrf", &format!("{csrf}x"))])
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(status_of(&p, &id).await, ConsentStatus::Authorised);

    // Withdraw.
    let r = agent.post(&revoke_url, &[("csrf", &csrf)]).await.unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(location(&r), "/account");
    assert_eq!(status_of(&p, &id).await, ConsentStatus::Revoked);
    let record = p.state().store.find_consent(&id).await.unwrap().unwrap();
    assert_eq!(
        record.details["status_reason"]["description"],
        "revoked by the customer"
    );
    let audit = p.state().store.list_audit(&id).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.action, "revoked");
    assert_eq!(
        last.actor,
        format!("customer:{}", record.customer_id.unwrap())
    );
    let dash = agent.get("/account").await.unwrap();
    assert!(dash.html.contains("id=\"notice\""), "{}", dash.html);
    let card = card_of(&dash.html, &id);
    assert!(card.contains("data-status=\"revoked\""), "{card}");
    assert!(card.contains("Access withdrawn"), "{card}");
    assert!(!card.contains(&revoke_url), "no withdraw button once ended");
    // A second withdrawal changes nothing.
    let again = agent.post(&revoke_url, &[("csrf", &csrf)]).await.unwrap();
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(
        p.state().store.list_audit(&id).await.unwrap().len(),
        audit.len()
    );

    // The TPP: the RS sees the revocation within its one-second cache; refresh is dead.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = tpp
        .resource(Method::GET, &balances, &at, None)
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{:?}", r.body);
    let st = tpp
        .resource(
            Method::GET,
            &rs(&p, &format!("/account-access-consents/{id}")),
            &cc_token(tpp).await,
            None,
        )
        .await
        .unwrap();
    assert_eq!(st.body["Data"]["Status"], "CANC", "{:?}", st.body);
    let rt = t.str("refresh_token").unwrap();
    let r = tpp
        .token(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    p.finish().await;
}

/// A plain `oauth` consent of `customer_id`, authorised.
async fn insert_oauth_consent(p: &TestPlatform, customer_id: &str) -> String {
    let now = p.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    let c = ConsentRecord {
        id: id.clone(),
        client_id: p.kit.client("tls_client_auth").unwrap().client_id.clone(),
        customer_id: Some(customer_id.to_owned()),
        kind: "oauth".into(),
        scopes: "openid accounts".into(),
        status: ConsentStatus::Authorised,
        details: Value::Object(Default::default()),
        created_at: now,
        updated_at: now,
        expires_at: Some(now + 3600),
    };
    let audit = AuditEntry {
        consent_id: id.clone(),
        at: now,
        actor: format!("customer:{customer_id}"),
        action: "authorised".into(),
        detail: "scope=openid accounts".into(),
    };
    p.state().store.insert_consent(&c, &audit).await.unwrap();
    id
}

#[tokio::test]
async fn another_customers_consent_and_signed_out_sessions_are_refused() {
    let p = TestPlatform::spawn().await;
    let st = p.state();
    let alice = st
        .store
        .find_customer_by_username(&p.kit.customer.username)
        .await
        .unwrap()
        .unwrap();
    let alices = insert_oauth_consent(&p, &alice.id).await;
    // Bob: a second customer with his own password and TOTP secret.
    let secret = authz_server::password::new_totp_secret();
    let bob = CustomerRecord {
        id: "cust-bob".into(),
        username: "bob".into(),
        display_name: "Bob Otieno".into(),
        password_hash: authz_server::password::hash("bob's long passphrase").unwrap(),
        totp_secret: secret.clone(),
        totp_last_step: 0,
        created_at: p.clock.now(),
    };
    st.store.upsert_customer(&bob).await.unwrap();
    let bobs = insert_oauth_consent(&p, &bob.id).await;

    p.clock.advance(30);
    let agent = p.customer();
    let (dash, cookie) = sign_in(
        &agent,
        "bob",
        "bob's long passphrase",
        &totp(&secret, p.clock.now()).unwrap(),
    )
    .await;
    assert!(dash.html.contains("Bob Otieno"));
    assert!(dash.html.contains(&bobs));
    assert!(!dash.html.contains(&alices), "only his own consents");
    // The oauth consent's scopes in words.
    assert!(
        card_of(&dash.html, &bobs).contains("See your accounts and transactions"),
        "{}",
        dash.html
    );
    let csrf = dash.csrf().unwrap();

    // Alice's consent: answered like an unknown one, and left alone.
    let url = format!("/account/consents/{alices}/revoke");
    assert_eq!(agent.get(&url).await.unwrap().status, 404);
    let r = agent.post(&url, &[("csrf", &csrf)]).await.unwrap();
    assert_eq!(r.status, 404, "{}", r.html);
    assert_eq!(status_of(&p, &alices).await, ConsentStatus::Authorised);
    assert_eq!(st.store.list_audit(&alices).await.unwrap().len(), 1);
    let r = agent
        .post(
            "/account/consents/no-such-consent/revoke",
            &[("csrf", &csrf)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    // Sign out; the old session (cookie and CSRF token) no longer works.
    let out = agent
        .post("/account/logout", &[("csrf", &csrf)])
        .await
        .unwrap();
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(location(&out).starts_with("/account/login"));
    let raw = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(&std::fs::read(&p.kit.ca_cert).unwrap()).unwrap(),
        ])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = p.kit.issuer.trim_end_matches('/');
    let g = raw
        .get(format!("{base}/account"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), StatusCode::SEE_OTHER);
    let r = raw
        .post(format!("{base}/account/consents/{bobs}/revoke"))
        .header("cookie", &cookie)
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&p, &bobs).await, ConsentStatus::Authorised);

    // Bob signs in again and withdraws his plain oauth consent.
    p.clock.advance(30);
    let agent = p.customer();
    let (dash, _) = sign_in(
        &agent,
        "bob",
        "bob's long passphrase",
        &totp(&secret, p.clock.now()).unwrap(),
    )
    .await;
    let csrf = dash.csrf().unwrap();
    let r = agent
        .post(
            &format!("/account/consents/{bobs}/revoke"),
            &[("csrf", &csrf)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(status_of(&p, &bobs).await, ConsentStatus::Revoked);
    p.finish().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_username_out() {
    let p = TestPlatform::spawn().await;
    let c = p.kit.customer.clone();
    let agent = p.customer();
    let mut last = StatusCode::OK;
    for _ in 0..5 {
        let login = agent.get("/account/login").await.unwrap();
        let r = agent
            .post(
                "/account/login",
                &[
                    ("csrf", &login.csrf().unwrap()),
                    ("username", &c.username),
                    ("password", "not the password"),
                ],
            )
            .await
            .unwrap();
        last = r.status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // Even the right password is refused now, from a fresh session.
    let fresh = p.customer();
    let login = fresh.get("/account/login").await.unwrap();
    let r = fresh
        .post(
            "/account/login",
            &[
                ("csrf", &login.csrf().unwrap()),
                ("username", &c.username),
                ("password", &c.password),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.html);
    // After the lock-out window it works again.
    p.clock.advance(16 * 60);
    let (dash, _) = sign_in(&fresh, &c.username, &c.password, &p.fresh_otp()).await;
    assert!(dash.html.contains("id=\"summary\""));
    p.finish().await;
}
