//! Authentication factors (issue 6): TOTP secrets sealed at rest, authenticator
//! enrolment from the dashboard (QR + confirmation with the new secret, fresh sign-in,
//! CSRF), single-use recovery codes at both logins, the durable doubling back-off, and
//! the sign-in audit trail — all through the real HTTPS listeners.

use authz_server::clock::Clock;
use authz_store::CustomerRecord;
use fapi_conformance::Pkce;
use fapi_conformance::browser::{Customer, Page, totp};
use reqwest::StatusCode;
use wekeza_tests::{TestPlatform, jwt_claims, query_param};

fn location(page: &Page) -> &str {
    page.location.as_deref().unwrap_or_default()
}

/// Dashboard sign-in with a second factor (TOTP code or recovery code); returns the
/// response to the second-factor POST.
async fn dash_login(agent: &Customer, username: &str, password: &str, second: &str) -> Page {
    let login = agent.get("/account/login").await.unwrap();
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
    if r.status != StatusCode::SEE_OTHER {
        return r;
    }
    assert_eq!(location(&r), "/account/login/otp", "{}", r.html);
    let page = agent.get("/account/login/otp").await.unwrap();
    agent
        .post(
            "/account/login/otp",
            &[("csrf", &page.csrf().unwrap()), ("otp", second)],
        )
        .await
        .unwrap()
}

async fn alice(p: &TestPlatform) -> CustomerRecord {
    p.state()
        .store
        .find_customer_by_username(&p.kit.customer.username)
        .await
        .unwrap()
        .unwrap()
}

/// What the stored (sealed) TOTP secret of the customer opens to.
async fn stored_secret(p: &TestPlatform, id: &str) -> String {
    let c = p.state().store.find_customer(id).await.unwrap().unwrap();
    p.state().secrets.open(id, &c.totp_secret).unwrap().secret
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = html.find(start)? + start.len();
    let rest = &html[i..];
    Some(&rest[..rest.find(end)?])
}

/// Signed in to the dashboard: start an enrolment and read the new secret off the page.
async fn start_enrolment(agent: &Customer) -> (String, Page) {
    let sec = agent.get("/account/security").await.unwrap();
    assert_eq!(sec.status, 200, "{}", sec.html);
    let r = agent
        .post("/account/totp/start", &[("csrf", &sec.csrf().unwrap())])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(location(&r), "/account/totp");
    let page = agent.get("/account/totp").await.unwrap();
    assert_eq!(page.status, 200, "{}", page.html);
    let secret = between(
        &page.html,
        "id=\"totp-secret\" aria-labelledby=\"totp-secret-label\">",
        "<",
    )
    .expect("secret shown as text")
    .replace(' ', "");
    (secret, page)
}

fn recovery_codes(html: &str) -> Vec<String> {
    html.split("<code class=\"recovery-code\">")
        .skip(1)
        .filter_map(|s| s.split('<').next())
        .map(str::to_owned)
        .collect()
}

/// Enrol a new authenticator for the signed-in agent; returns (secret, recovery codes).
async fn enrol(p: &TestPlatform, agent: &Customer) -> (String, Vec<String>) {
    let (secret, page) = start_enrolment(agent).await;
    let r = agent
        .post(
            "/account/totp/confirm",
            &[
                ("csrf", &page.csrf().unwrap()),
                ("otp", &totp(&secret, p.clock.now()).unwrap()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.html);
    let codes = recovery_codes(&r.html);
    assert_eq!(codes.len(), 10, "{}", r.html);
    (secret, codes)
}

/// The AS login of an authorization with this second factor: the response to it.
async fn as_login(p: &TestPlatform, agent: &Customer, password: &str, second: &str) -> Page {
    // The certificate-authenticated client: its requests do not depend on the clock
    // the tests move.
    let pkce = Pkce::new();
    let par = p.mtls.par(&pkce, "st", "n", &[]).await.unwrap();
    assert_eq!(par.status, 201, "{:?}", par.body);
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
                ("password", password),
            ],
        )
        .await
        .unwrap();
    if r.status != StatusCode::SEE_OTHER {
        return r;
    }
    agent
        .post("/login/otp", &[("csrf", &csrf), ("otp", second)])
        .await
        .unwrap()
}

#[tokio::test]
async fn totp_secrets_are_sealed_at_rest_and_plaintext_is_migrated() {
    let p = TestPlatform::spawn().await;
    let st = p.state();
    let kit_secret = p.kit.customer.totp_secret.clone();
    // The row holds a sealed value under the key id of the DEK, not the secret.
    let a = alice(&p).await;
    assert_ne!(a.totp_secret, kit_secret);
    assert!(!a.totp_secret.contains(&kit_secret));
    assert!(
        a.totp_secret
            .starts_with(&format!("wkz1.{}.", st.secrets.active_kid())),
        "{}",
        a.totp_secret
    );
    // The key file exists, private.
    let key_file = p
        .dir
        .join("keys/secrets")
        .join(format!("{}.json", st.secrets.active_kid()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key file is private");
    }
    // The kit still gives newcomers the plaintext secret, and it works.
    let t = p.tokens(&p.pkjwt).await;
    assert!(t.str("id_token").is_some());

    // A plaintext secret (a database from before encryption): sealed by the start-up
    // migration step, which is idempotent.
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
    assert_eq!(
        authz_server::secrets::reseal_all(&*st.auth, &st.secrets)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        authz_server::secrets::reseal_all(&*st.auth, &st.secrets)
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    let row = st.store.find_customer("cust-bob").await.unwrap().unwrap();
    assert!(!row.totp_secret.contains(&secret));
    assert_eq!(stored_secret(&p, "cust-bob").await, secret);
    p.clock.advance(30);
    let r = dash_login(
        &p.customer(),
        "bob",
        "bob's long passphrase",
        &totp(&secret, p.clock.now()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(location(&r), "/account");

    // A sealed value copied onto another customer's row does not open there: Bob's
    // login with Alice's code fails.
    assert!(
        st.auth
            .swap_totp_secret("cust-bob", &row.totp_secret, &a.totp_secret)
            .await
            .unwrap()
    );
    p.clock.advance(30);
    let r = dash_login(
        &p.customer(),
        "bob",
        "bob's long passphrase",
        &totp(&kit_secret, p.clock.now()).unwrap(),
    )
    .await;
    assert_ne!(r.status, StatusCode::SEE_OTHER, "{}", r.html);

    // Key rotation: the next start's migration re-seals under the new key id (Bob's
    // misplaced value does not open and is left alone).
    let keys = &st.config.keys_dir;
    let kid = authz_server::secrets::SecretBox::rotate(keys, p.clock.now()).unwrap();
    let rotated = authz_server::secrets::SecretBox::load_or_create(keys, p.clock.now()).unwrap();
    assert_eq!(
        authz_server::secrets::reseal_all(&*st.auth, &rotated)
            .await
            .unwrap(),
        1
    );
    let a2 = alice(&p).await;
    assert!(a2.totp_secret.starts_with(&format!("wkz1.{kid}.")));
    assert_eq!(
        rotated.open(&a2.id, &a2.totp_secret).unwrap().secret,
        kit_secret
    );
    p.finish().await;
}

#[tokio::test]
async fn enrolment_needs_the_new_code_a_fresh_sign_in_and_the_session_csrf() {
    let p = TestPlatform::spawn().await;
    let c = p.kit.customer.clone();
    let id = alice(&p).await.id;
    let agent = p.customer();
    let r = dash_login(&agent, &c.username, &c.password, &p.fresh_otp()).await;
    assert_eq!(location(&r), "/account", "{}", r.html);

    // No CSRF token, or another session's: refused, nothing started.
    let r = agent.post("/account/totp/start", &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let other = p.customer();
    let r = dash_login(&other, &c.username, &c.password, &p.fresh_otp()).await;
    assert_eq!(location(&r), "/account");
    let other_csrf = other
        .get("/account/security")
        .await
        .unwrap()
        .csrf()
        .unwrap();
    let r = agent
        .post("/account/totp/start", &[("csrf", &other_csrf)])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        agent
            .get("/account/totp")
            .await
            .unwrap()
            .location
            .as_deref(),
        Some("/account/security")
    );

    let (secret, page) = start_enrolment(&agent).await;
    assert!(secret.len() >= 32, "160 bits or more: {secret}");
    assert_eq!(
        authz_server::password::totp_secret_len(&secret),
        authz_server::password::MIN_TOTP_SECRET_BYTES
    );
    assert!(page.html.contains("<svg") && page.html.contains("QR code"));
    assert!(!page.html.contains("style="));
    // The pending secret is kept sealed, not in clear, in the ephemeral store.
    assert_ne!(secret, p.kit.customer.totp_secret);

    // A wrong code (here: one from the old app) changes nothing.
    let csrf = page.csrf().unwrap();
    let r = agent
        .post(
            "/account/totp/confirm",
            &[
                ("csrf", &csrf),
                ("otp", &totp(&c.totp_secret, p.clock.now()).unwrap()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.html);
    assert!(r.html.contains("id=\"error\""));
    assert_eq!(stored_secret(&p, &id).await, c.totp_secret);

    // The right code replaces the secret and shows ten recovery codes once.
    let r = agent
        .post(
            "/account/totp/confirm",
            &[
                ("csrf", &csrf),
                ("otp", &totp(&secret, p.clock.now()).unwrap()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.html);
    assert_eq!(recovery_codes(&r.html).len(), 10);
    assert_eq!(stored_secret(&p, &id).await, secret);
    assert_eq!(p.state().auth.recovery_codes_left(&id).await.unwrap(), 10);
    // Single use: the enrolment state is gone.
    let again = agent
        .post(
            "/account/totp/confirm",
            &[
                ("csrf", &csrf),
                ("otp", &totp(&secret, p.clock.now()).unwrap()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.html);

    // The old app's codes no longer sign in; the new app's do.
    p.clock.advance(30);
    let old = as_login(
        &p,
        &p.customer(),
        &c.password,
        &totp(&c.totp_secret, p.clock.now()).unwrap(),
    )
    .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.html);
    let new = as_login(
        &p,
        &p.customer(),
        &c.password,
        &totp(&secret, p.clock.now()).unwrap(),
    )
    .await;
    assert_eq!(new.location.as_deref(), Some("/consent"), "{}", new.html);

    // Older than five minutes: a change asks for a fresh sign-in (step-up), which
    // lands back on the security page.
    p.clock.advance(6 * 60);
    let sec = agent.get("/account/security").await.unwrap();
    let r = agent
        .post("/account/totp/start", &[("csrf", &sec.csrf().unwrap())])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account/login?reauth=1");
    let login = agent.get("/account/login?reauth=1").await.unwrap();
    assert!(login.html.contains("sign in again"), "{}", login.html);
    p.clock.advance(30);
    let r = dash_login(
        &agent,
        &c.username,
        &c.password,
        &totp(&secret, p.clock.now()).unwrap(),
    )
    .await;
    assert_eq!(location(&r), "/account/security", "{}", r.html);
    assert_eq!(
        stored_secret(&p, &id).await,
        secret,
        "nothing changed meanwhile"
    );
    p.finish().await;
}

#[tokio::test]
async fn recovery_codes_work_once_at_both_logins_and_say_so() {
    let p = TestPlatform::spawn().await;
    let c = p.kit.customer.clone();
    let id = alice(&p).await.id;
    let agent = p.customer();
    let r = dash_login(&agent, &c.username, &c.password, &p.fresh_otp()).await;
    assert_eq!(location(&r), "/account");
    let (_secret, codes) = enrol(&p, &agent).await;
    // Only digests are stored.
    for code in &codes {
        let n = authz_server::password::normalize_recovery_code(code).unwrap();
        assert!(
            p.state()
                .auth
                .list_auth_events(&id, 100)
                .await
                .unwrap()
                .iter()
                .all(|e| !e.reason.contains(&n))
        );
    }

    // At the AS login, in capitals with spaces as someone might type it: accepted, and
    // the ID token says a recovery code was used.
    let pkce = Pkce::new();
    let par = p.pkjwt.par(&pkce, "st", "n", &[]).await.unwrap();
    let as_agent = p.customer();
    let login = as_agent
        .open(&p.pkjwt.authorize_url(par.str("request_uri").unwrap()))
        .await
        .unwrap();
    let typed = codes[0].to_uppercase().replace('-', " ");
    let consent = as_agent
        .sign_in(&login, &c.username, &c.password, &typed)
        .await
        .unwrap();
    let back = as_agent.decide(&consent, true).await.unwrap();
    let code = query_param(&back, "code").unwrap();
    let t = p.pkjwt.exchange_code(&code, &pkce).await.unwrap();
    assert_eq!(t.status, 200, "{:?}", t.body);
    let idt = jwt_claims(t.str("id_token").unwrap());
    assert_eq!(idt["amr"], serde_json::json!(["pwd", "rec", "mfa"]));
    assert_eq!(idt["acr"], "urn:openbanking:psd2:sca");
    assert_eq!(p.state().auth.recovery_codes_left(&id).await.unwrap(), 9);

    // The same code again: refused at the dashboard login (and the AS login).
    let r = dash_login(&p.customer(), &c.username, &c.password, &codes[0]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.html);
    let r = as_login(&p, &p.customer(), &c.password, &codes[0]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.html);
    // Another one works at the dashboard.
    let fresh = p.customer();
    let r = dash_login(&fresh, &c.username, &c.password, &codes[1]).await;
    assert_eq!(location(&r), "/account", "{}", r.html);
    // Its use is audited.
    let ev = p.state().auth.list_auth_events(&id, 50).await.unwrap();
    let used: Vec<_> = ev
        .iter()
        .filter(|e| e.method == "recovery" && e.outcome == "success")
        .collect();
    assert_eq!(used.len(), 2, "{ev:?}");
    assert!(used.iter().all(|e| e.reason == "recovery_code_used"));
    assert!(used.iter().any(|e| e.channel == "interaction"
        && e.client_id.as_deref() == Some(p.pkjwt.client_id.as_str())));
    assert!(
        ev.iter()
            .any(|e| e.method == "recovery" && e.outcome == "failure")
    );

    // Regenerated: the old unused codes stop working.
    let sec = fresh.get("/account/security").await.unwrap();
    assert!(sec.html.contains("id=\"recovery-left\">8<"), "{}", sec.html);
    let r = fresh
        .post("/account/recovery-codes", &[("csrf", &sec.csrf().unwrap())])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.html);
    let new_codes = recovery_codes(&r.html);
    assert_eq!(new_codes.len(), 10);
    let r = dash_login(&p.customer(), &c.username, &c.password, &codes[2]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = dash_login(&p.customer(), &c.username, &c.password, &new_codes[0]).await;
    assert_eq!(location(&r), "/account", "{}", r.html);
    p.finish().await;
}

#[tokio::test]
async fn backoff_locks_durably_across_instances_doubles_and_reveals_nothing() {
    let p = TestPlatform::spawn().await;
    let c = p.kit.customer.clone();
    let id = alice(&p).await.id;
    // Five wrong passwords at the AS login (one interaction ends after five anyway).
    for _ in 0..5 {
        let r = as_login(&p, &p.customer(), "wrong password", "000000").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.html);
    }
    // Locked: the right password is refused, with a clear message.
    let locked = as_login(&p, &p.customer(), &c.password, "000000").await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.html
    );
    assert!(
        locked.html.contains("try again in a minute"),
        "{}",
        locked.html
    );
    // The dashboard shares the lock.
    let r = dash_login(&p.customer(), &c.username, &c.password, "000000").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // An unknown username is answered the same way: no hint whether it exists.
    let agent = p.customer();
    for _ in 0..5 {
        let r = dash_login(&agent, "nobody-here", "wrong password", "000000").await;
        assert!(r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::TOO_MANY_REQUESTS);
    }
    let r = dash_login(&p.customer(), "nobody-here", "anything", "000000").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    // Durable and shared: a second instance on the same database sees the lock.
    let cfg = p.state().config.clone();
    let q = TestPlatform::spawn_with(|c2| {
        c2.database_url = cfg.database_url.clone();
        c2.database_schema = cfg.database_schema.clone();
        c2.redis_url = cfg.redis_url.clone();
        c2.redis_key_prefix = cfg.redis_key_prefix.clone();
        c2.keys_dir = cfg.keys_dir.clone();
        c2.certs_dir = cfg.certs_dir.clone();
    })
    .await;
    q.clock.advance(p.clock.now() - q.clock.now());
    let r = as_login(&q, &q.customer(), &c.password, "000000").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.html);

    // (From here on the second instance: it re-registered the sandbox clients with its
    // own redirect URIs.) After a minute it opens; five more failures lock for two.
    q.clock.advance(61);
    let ok = as_login(&q, &q.customer(), "wrong password", "000000").await;
    assert_eq!(
        ok.status,
        StatusCode::UNAUTHORIZED,
        "open again: {}",
        ok.html
    );
    for _ in 0..4 {
        as_login(&q, &q.customer(), "wrong password", "000000").await;
    }
    q.clock.advance(61);
    let r = as_login(&q, &q.customer(), &c.password, "000000").await;
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "doubled: {}",
        r.html
    );
    q.clock.advance(60);
    let otp = q.fresh_otp();
    let r = as_login(&q, &q.customer(), &c.password, &otp).await;
    assert_eq!(r.location.as_deref(), Some("/consent"), "{}", r.html);

    // Every step is in the audit trail, no secrets in it.
    let ev = q.state().auth.list_auth_events(&id, 100).await.unwrap();
    assert!(ev.iter().any(|e| e.method == "password"
        && e.outcome == "failure"
        && e.reason == "bad_password"
        && e.channel == "interaction"));
    assert!(ev.iter().any(|e| e.outcome == "locked"));
    assert!(
        ev.iter()
            .any(|e| e.method == "totp" && e.outcome == "success")
    );
    for e in &ev {
        assert!(!e.reason.contains(&c.password) && !e.reason.contains("wrong password"));
    }
    q.finish().await;
    p.finish().await;
}

#[tokio::test]
async fn sign_in_activity_is_shown_to_the_customer() {
    let p = TestPlatform::spawn().await;
    let c = p.kit.customer.clone();
    let id = alice(&p).await.id;
    let r = as_login(&p, &p.customer(), "wrong password", "000000").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let agent = p.customer();
    let r = dash_login(&p.customer(), &c.username, &c.password, "123").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = dash_login(&agent, &c.username, &c.password, &p.fresh_otp()).await;
    assert_eq!(location(&r), "/account", "{}", r.html);
    let ev = p.state().auth.list_auth_events(&id, 100).await.unwrap();
    assert_eq!(
        ev.iter()
            .map(|e| (e.channel.as_str(), e.method.as_str(), e.outcome.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("dashboard", "totp", "success"),
            ("dashboard", "password", "success"),
            ("dashboard", "totp", "failure"),
            ("dashboard", "password", "success"),
            ("interaction", "password", "failure"),
        ]
    );
    let sec = agent.get("/account/security").await.unwrap();
    assert_eq!(sec.status, 200);
    let list = between(&sec.html, "id=\"activity-list\"", "</ol>").unwrap();
    assert_eq!(list.matches("<li").count(), 5, "{list}");
    assert!(
        list.contains("Signing in for Sandbox Payments App"),
        "{list}"
    );
    assert!(list.contains("Refused"));
    assert!(
        sec.html.contains("id=\"nav-security\"")
            || agent
                .get("/account")
                .await
                .unwrap()
                .html
                .contains("id=\"nav-security\"")
    );
    p.finish().await;
}

/// Polls the durable "last used" of a consent (recorded off the request path).
async fn last_used_after(p: &TestPlatform, consent_id: &str, after: Option<i64>) -> Option<i64> {
    for _ in 0..100 {
        let v = p.state().auth.consent_last_used(consent_id).await.unwrap();
        if v != after {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    after
}

#[tokio::test]
async fn the_resource_server_records_consent_use_at_most_once_a_minute() {
    use reqwest::Method;
    use serde_json::json;
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let rs = |path: &str| {
        format!(
            "{}/open-banking/v4.0/aisp{path}",
            p.kit.resource_base_url.trim_end_matches('/')
        )
    };
    // An account-access consent, authorised by the customer.
    let cc = tpp.client_credentials("accounts").await.unwrap();
    let cc = cc.str("access_token").unwrap().to_owned();
    let body = json!({
        "Data": {"Permissions": ["ReadAccountsDetail", "ReadBalances"],
                 "ExpirationDateTime": "2099-01-01T00:00:00Z"},
        "Risk": {}
    });
    let r = tpp
        .resource(
            Method::POST,
            &rs("/account-access-consents"),
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
            "st",
            "n",
            &[("scope", "openid accounts"), ("claims", &claims)],
        )
        .await
        .unwrap();
    let agent = p.customer();
    let login = agent
        .open(&tpp.authorize_url(par.str("request_uri").unwrap()))
        .await
        .unwrap();
    let c = &p.kit.customer;
    let consent = agent
        .sign_in(&login, &c.username, &c.password, &p.fresh_otp())
        .await
        .unwrap();
    let back = agent.decide(&consent, true).await.unwrap();
    let t = tpp
        .exchange_code(&query_param(&back, "code").unwrap(), &pkce)
        .await
        .unwrap();
    let at = t.str("access_token").unwrap().to_owned();
    assert_eq!(
        p.state().auth.consent_last_used(&id).await.unwrap(),
        None,
        "not used yet"
    );

    // First use: recorded.
    let r = tpp
        .resource(Method::GET, &rs("/accounts"), &at, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let first = last_used_after(&p, &id, None).await.expect("use recorded");
    assert!((first - p.clock.now()).abs() <= 1);
    // More uses within the minute: no further write.
    p.clock.advance(20);
    for _ in 0..3 {
        let r = tpp
            .resource(Method::GET, &rs("/accounts"), &at, None)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        p.state().auth.consent_last_used(&id).await.unwrap(),
        Some(first)
    );
    // The next minute: recorded again.
    p.clock.advance(60);
    let r = tpp
        .resource(Method::GET, &rs("/accounts"), &at, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let second = last_used_after(&p, &id, Some(first)).await.unwrap();
    assert!(second > first);

    // The dashboard shows it.
    let dash = p.customer();
    let r = dash_login(&dash, &c.username, &c.password, &p.fresh_otp()).await;
    assert_eq!(location(&r), "/account", "{}", r.html);
    let html = dash.get("/account").await.unwrap().html;
    let i = html.find(&format!("data-consent-id=\"{id}\"")).unwrap();
    let card = &html[i..];
    let used = between(card, "<dd class=\"last-used\">", "</dd>").unwrap();
    assert!(used.contains("<time datetime="), "{used}");
    p.finish().await;
}

#[tokio::test]
async fn dashboard_passkey_sign_in_refuses_without_a_ceremony_a_passkey_or_while_locked() {
    let p = TestPlatform::spawn().await;
    let c = p.kit.customer.clone();
    let id = alice(&p).await.id;
    let agent = p.customer();
    let page = agent.get("/account/login/passkey").await.unwrap();
    assert_eq!(page.status, 200, "{}", page.html);
    let csrf = page.csrf().unwrap();
    // Another session's (or no) CSRF token: refused.
    let r = agent
        .post(
            "/account/login/passkey",
            &[("csrf", "nope"), ("username", &c.username)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // No passkey enrolled: the same answer as for an unknown username.
    let r = agent
        .post(
            "/account/login/passkey",
            &[("csrf", &csrf), ("username", &c.username)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.html);
    let u = agent
        .post(
            "/account/login/passkey",
            &[("csrf", &csrf), ("username", "nobody-here")],
        )
        .await
        .unwrap();
    assert_eq!(u.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        between(&r.html, "id=\"error\"", "</div>"),
        between(&u.html, "id=\"error\"", "</div>")
    );
    // An answer without a ceremony started: refused, nothing signed in.
    let r = agent
        .post(
            "/account/login/passkey/finish",
            &[("csrf", &csrf), ("credential", "{\"id\":\"x\"}")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.html);
    assert_eq!(
        agent.get("/account").await.unwrap().status,
        StatusCode::SEE_OTHER
    );
    let ev = p.state().auth.list_auth_events(&id, 10).await.unwrap();
    assert!(
        ev.iter()
            .any(|e| e.method == "passkey" && e.outcome == "failure" && e.reason == "no_passkey")
    );
    // Locked usernames get no ceremony.
    for _ in 0..5 {
        as_login(&p, &p.customer(), "wrong password", "000000").await;
    }
    let fresh = p.customer();
    let page = fresh.get("/account/login/passkey").await.unwrap();
    let r = fresh
        .post(
            "/account/login/passkey",
            &[("csrf", &page.csrf().unwrap()), ("username", &c.username)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.html);
    p.finish().await;
}
