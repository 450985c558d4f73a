//! Payment consent lifetimes (ADR 0019): a payment consent never authorised within its
//! window lapses to RJCT, an authorised one never used to EXPD — moved by the
//! housekeeping sweep exactly once (racing sweepers, one audit line, one event), never
//! after it was consumed, and a lapsed consent can be neither authorised nor used.

use crate::alerts as al;
use crate::events as ev;
use crate::file_payments as fp;
use crate::payments as pay;
use authz_server::clock::Clock;
use authz_store::{EVENT_RESOURCE_UPDATE, SqlStore};
use fapi_conformance::{Pkce, Tpp};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wekeza_tests::TestPlatform;

fn intent_claims(id: &str) -> String {
    json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}}).to_string()
}

async fn consent_of(p: &TestPlatform, tpp: &Tpp, path: &str) -> Value {
    let cc = pay::cc_token(tpp, "payments").await;
    let r = pay::call(tpp, Method::GET, &pay::url(p, path), &cc, None, None).await;
    assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    r.body["Data"].clone()
}

/// Events about consent `id` that reached the receiver.
fn events_about(inbox: &ev::Inbox, keys: &[fapi_jose::Jwk], id: &str) -> usize {
    let mut seen = std::collections::HashSet::new();
    inbox
        .sets("/c")
        .iter()
        .map(|s| ev::verified(s, keys))
        .filter(|c| {
            c["events"][EVENT_RESOURCE_UPDATE]["subject"]["http://openbanking.org.uk/rid"] == id
        })
        .filter(|c| seen.insert(c["jti"].as_str().unwrap_or_default().to_owned()))
        .count()
}

fn system_lines(audit: &[authz_store::AuditEntry]) -> Vec<&authz_store::AuditEntry> {
    audit.iter().filter(|a| a.actor == "system").collect()
}

async fn sweepers(p: &TestPlatform, n: usize) -> Vec<SqlStore> {
    let cfg = &p.state().config;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            SqlStore::connect(&cfg.database_url, cfg.database_schema.as_deref())
                .await
                .unwrap(),
        );
    }
    out
}

async fn sweep_all(p: &TestPlatform, stores: &[SqlStore]) -> usize {
    let now = time::OffsetDateTime::from_unix_timestamp(p.clock.now()).unwrap();
    let l = p.state().config.payment_consent_lifetimes();
    let moved = futures::future::join_all(
        stores
            .iter()
            .map(|s| resource_server::consent_lapse::sweep_lapsed_payment_consents(s, now, &l)),
    )
    .await;
    moved.into_iter().map(|m| m.unwrap()).sum()
}

#[tokio::test]
async fn lapsed_payment_consents_move_once_and_cannot_be_authorised_or_used() {
    // Two-minute lifetimes; the platform's own sweep is kept out of the way (hourly), the
    // test sweeps with racing sweepers of its own.
    let p = TestPlatform::spawn_with(|c| {
        c.events_retry_base_ms = 100;
        c.events_poll_interval_ms = 50;
        c.events_delivery_timeout_ms = 2000;
        c.events_housekeeping_interval_ms = 3_600_000;
        c.payment_consent_auth_window_secs = 120;
        c.payment_consent_authorised_ttl_secs = 120;
    })
    .await;
    let inbox = Arc::new(ev::Inbox::default());
    let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
    let keys = ev::published_keys(&p).await;
    let tpp = &p.mtls;
    al::subscribe(&p, tpp, rx.port, "/c", &[EVENT_RESOURCE_UPDATE]).await;
    let alice = pay::accounts_of(&p, "alice");
    let from = &alice[0];
    let body = pay::consent_body("5.00", "ELSEWHERE-9", Some(&from.number));

    // B and D: authorised, never used (D is paid while the sweep runs); U: used at once.
    let b = pay::create_consent(&p, tpp, &body).await;
    let b_token = pay::authorise(&p, tpp, &b, None).await;
    let b_token = b_token.str("access_token").unwrap().to_owned();
    let d = pay::create_consent(&p, tpp, &body).await;
    let d_token = pay::authorise(&p, tpp, &d, None).await;
    let d_token = d_token.str("access_token").unwrap().to_owned();
    let u = pay::create_consent(&p, tpp, &body).await;
    let u_token = pay::authorise(&p, tpp, &u, None).await;
    let u_token = u_token.str("access_token").unwrap().to_owned();
    let r = pay::pay(&p, tpp, &u_token, &u, &body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // A: never authorised; F: a file consent never given its file. P: pushed (PAR) now,
    // opened by the customer after the window.
    let a = pay::create_consent(&p, tpp, &body).await;
    let file = fp::json_file(&[fp::item("I1", "1.00", "ELSEWHERE-1", "Payee")]);
    let f = fp::create(
        &p,
        tpp,
        &fp::consent_body(&file, "UK.OBIE.PaymentInitiation.4.0", 1, "1.00", None),
    )
    .await;
    let pp = pay::create_consent(&p, tpp, &body).await;
    p.clock.advance(60);
    let pkce = Pkce::new();
    let extra = [
        ("scope", "openid payments"),
        ("claims", &intent_claims(&pp)),
    ];
    let par = tpp.par(&pkce, "st-l", "n-l", &extra).await.unwrap();
    assert_eq!(par.status, 201, "{:?}", par.body);
    ev::wait_for("the authorisation events", 20, || {
        events_about(&inbox, &keys, &b) >= 1 && events_about(&inbox, &keys, &d) >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_b = events_about(&inbox, &keys, &b);
    let before_a = events_about(&inbox, &keys, &a);

    // Past every lifetime. Before any sweep: the lapsed consents cannot be authorised —
    // neither pushed again nor approved on a page opened from an earlier push.
    p.clock.advance(61);
    let extra = [("scope", "openid payments"), ("claims", &intent_claims(&a))];
    let r = tpp.par(&Pkce::new(), "st-a", "n-a", &extra).await.unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["error"], "invalid_request");
    let (_, page) =
        wekeza_tests::journey::kit_customer_signs_in_at(&p, tpp, par.str("request_uri").unwrap())
            .await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(
        page.html.contains("This payment cannot be approved"),
        "{}",
        page.html
    );

    // Before any sweep: B's customer token cannot pay — the payment checks the lifetime
    // itself (and again inside its transaction); B stays AUTH for the sweep, no money moves.
    let balance_before = pay::balance(&p, &from.id).await;
    let r = pay::pay(&p, tpp, &b_token, &b, &body).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        r.body["Errors"][0]["ErrorCode"], "UK.OBIE.Resource.InvalidConsentStatus",
        "{:?}",
        r.body
    );
    let msg = r.body["Errors"][0]["Message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("expired") && msg.contains("120 seconds"),
        "{msg}"
    );
    let b_now = consent_of(&p, tpp, &format!("/domestic-payment-consents/{b}")).await;
    assert_eq!(b_now["Status"], "AUTH", "{b_now}");
    assert_eq!(pay::balance(&p, &from.id).await, balance_before);

    // D is paid while three sweepers run: past its lifetime, the payment is refused
    // whoever comes first, and exactly one sweeper expires D.
    let stores = sweepers(&p, 3).await;
    let (d_url, d_body, d_key) = (
        pay::url(&p, "/domestic-payments"),
        pay::payment_body(&d, &body),
        pay::key(),
    );
    let pay_d = pay::call(
        tpp,
        Method::POST,
        &d_url,
        &d_token,
        Some(&d_body),
        Some(&d_key),
    );
    let (paid, moved) = tokio::join!(pay_d, sweep_all(&p, &stores));
    let d_now = consent_of(&p, tpp, &format!("/domestic-payment-consents/{d}")).await;
    let store = p.state().store.clone();
    let d_audit = store.list_audit(&d).await.unwrap();
    assert_eq!(paid.status, 400, "{:?}", paid.body);
    assert_eq!(d_now["Status"], "EXPD", "{d_now} / {:?}", paid.body);
    assert_eq!(system_lines(&d_audit).len(), 1, "{d_audit:?}");
    // A, B, D, F, P, each by one sweeper; U (consumed) untouched.
    assert_eq!(moved, 5);
    assert_eq!(sweep_all(&p, &stores).await, 0, "nothing left to move");
    for (id, path, status, action) in [
        (
            &a,
            format!("/domestic-payment-consents/{a}"),
            "RJCT",
            "rejected",
        ),
        (
            &pp,
            format!("/domestic-payment-consents/{pp}"),
            "RJCT",
            "rejected",
        ),
        (
            &f,
            format!("/file-payment-consents/{f}"),
            "RJCT",
            "rejected",
        ),
        (
            &b,
            format!("/domestic-payment-consents/{b}"),
            "EXPD",
            "expired",
        ),
    ] {
        let data = consent_of(&p, tpp, &path).await;
        assert_eq!(data["Status"], status, "{id}: {data}");
        assert_eq!(
            data["StatusReason"][0]["StatusReasonCode"], "TKXP",
            "{id}: {data}"
        );
        let audit = store.list_audit(id).await.unwrap();
        let sys = system_lines(&audit);
        assert_eq!(sys.len(), 1, "{id}: {audit:?}");
        assert_eq!(sys[0].action, action);
    }
    let u_now = consent_of(&p, tpp, &format!("/domestic-payment-consents/{u}")).await;
    assert_eq!(u_now["Status"], "COND");
    assert!(system_lines(&store.list_audit(&u).await.unwrap()).is_empty());

    // One event per move.
    ev::wait_for("the lapse events", 20, || {
        events_about(&inbox, &keys, &b) > before_b && events_about(&inbox, &keys, &a) > before_a
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(events_about(&inbox, &keys, &b), before_b + 1);
    assert_eq!(events_about(&inbox, &keys, &a), before_a + 1);

    // The expired consent's token cannot pay; no money moved.
    let balance = pay::balance(&p, &from.id).await;
    let r = pay::pay(&p, tpp, &b_token, &b, &body).await;
    assert!(
        r.status == 400 || r.status == 401 || r.status == 403,
        "{:?}",
        r
    );
    assert!(
        r.body["Errors"][0]["ErrorCode"].is_string(),
        "OB error: {:?}",
        r.body
    );
    assert_eq!(pay::balance(&p, &from.id).await, balance);
    rx.stop().await;
    p.finish().await;
}

/// A file consent authorised and then left past its lifetime cannot be paid, even before
/// any sweep has expired it (the platform's sweep is kept out of the way): nothing moves.
#[tokio::test]
async fn an_authorised_file_consent_past_its_lifetime_cannot_be_paid() {
    let p = TestPlatform::spawn_with(|c| {
        c.events_housekeeping_interval_ms = 3_600_000;
        c.payment_consent_authorised_ttl_secs = 120;
    })
    .await;
    let tpp = &p.mtls;
    let alice = pay::accounts_of(&p, "alice");
    let from = &alice[0];
    let file = fp::json_file(&[fp::item("L1", "3.00", "ELSEWHERE-3", "Payee")]);
    let body = fp::consent_body(
        &file,
        "UK.OBIE.PaymentInitiation.4.0",
        1,
        "3.00",
        Some(&from.number),
    );
    let id = fp::create(&p, tpp, &body).await;
    let cc = pay::cc_token(tpp, "payments").await;
    let (s, b) = fp::upload(&p, tpp, &cc, &id, "application/json", &file, &pay::key()).await;
    assert_eq!(s, 200, "{b:?}");
    let at = fp::approve(&p, tpp, &id, None).await;
    let balance = pay::balance(&p, &from.id).await;
    p.clock.advance(121);
    let r = fp::execute(&p, tpp, &at, &fp::payment_body(&id, &body), &pay::key()).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        r.body["Errors"][0]["ErrorCode"],
        "UK.OBIE.Resource.InvalidConsentStatus"
    );
    let msg = r.body["Errors"][0]["Message"].as_str().unwrap_or_default();
    assert!(msg.contains("expired"), "{msg}");
    assert_eq!(fp::consent_status(&p, tpp, &cc, &id).await, "AUTH");
    assert_eq!(pay::balance(&p, &from.id).await, balance);
    p.finish().await;
}
