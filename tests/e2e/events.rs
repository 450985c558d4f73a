//! Event notifications end to end: TPPs subscribe over mTLS with client-credentials
//! tokens; consent changes (authorised, revoked by the TPP or on the customer's
//! dashboard) become signed SETs delivered to a real HTTPS receiver that fails, goes down
//! and comes back; the TPP's delivery log and redelivery; polling; the callback address
//! policy.

use authz_server::clock::Clock;
use authz_store::{EVENT_RESOURCE_UPDATE, EventStore, NewEvent, SqlStore};
use fapi_conformance::browser::Page;
use fapi_conformance::{Pkce, Tpp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wekeza_tests::{Reply, TestPlatform, query_param};

const AISP: &str = "/open-banking/v4.0/aisp";
const EVENTS: &str = "/open-banking/v4.0/events";

pub(crate) fn rs(p: &TestPlatform, path: &str) -> String {
    format!("{}{path}", p.kit.resource_base_url.trim_end_matches('/'))
}

async fn cc_token(tpp: &Tpp) -> String {
    let t = if tpp.uses_dpop() {
        tpp.client_credentials_dpop("accounts").await.unwrap()
    } else {
        tpp.client_credentials("accounts").await.unwrap()
    };
    assert_eq!(t.status, 200, "{:?}", t.body);
    t.str("access_token").unwrap().to_owned()
}

pub(crate) async fn call(tpp: &Tpp, method: Method, url: &str, body: Option<&Value>) -> Reply {
    let cc = cc_token(tpp).await;
    tpp.resource(method, url, &cc, body).await.unwrap()
}

pub(crate) async fn subscribe(p: &TestPlatform, tpp: &Tpp, callback: Option<&str>) -> Reply {
    let mut data = json!({"Version": "4.0"});
    if let Some(c) = callback {
        data["CallbackUrl"] = json!(c);
    }
    call(
        tpp,
        Method::POST,
        &rs(p, &format!("{EVENTS}/event-subscriptions")),
        Some(&json!({ "Data": data })),
    )
    .await
}

pub(crate) async fn create_intent(p: &TestPlatform, tpp: &Tpp) -> String {
    let body = json!({
        "Data": {
            "Permissions": ["ReadAccountsDetail", "ReadBalances"],
            "ExpirationDateTime": "2099-01-01T00:00:00Z"
        },
        "Risk": {}
    });
    let r = call(
        tpp,
        Method::POST,
        &rs(p, &format!("{AISP}/account-access-consents")),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["Data"]["ConsentId"].as_str().unwrap().to_owned()
}

/// The customer authorises intent `id` for their first account.
pub(crate) async fn authorise(p: &TestPlatform, tpp: &Tpp, id: &str) {
    let claims = json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}})
        .to_string();
    let pkce = Pkce::new();
    let par = tpp
        .par(
            &pkce,
            "st-ev",
            "n-ev",
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
    assert!(query_param(&back, "code").is_some(), "{back}");
}

fn location(page: &Page) -> &str {
    page.location.as_deref().unwrap_or_default()
}

/// The customer signs in to the dashboard and withdraws consent `id`.
async fn dashboard_revoke(p: &TestPlatform, id: &str) {
    let agent = p.customer();
    let c = &p.kit.customer;
    let login = agent.get("/account/login").await.unwrap();
    let r = agent
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
    assert_eq!(location(&r), "/account/login/otp", "{}", r.html);
    let page = agent.get("/account/login/otp").await.unwrap();
    let otp = p.fresh_otp();
    let r = agent
        .post(
            "/account/login/otp",
            &[("csrf", &page.csrf().unwrap()), ("otp", &otp)],
        )
        .await
        .unwrap();
    assert_eq!(location(&r), "/account", "{}", r.html);
    let url = format!("/account/consents/{id}/revoke");
    let confirm = agent.get(&url).await.unwrap();
    let r = agent
        .post(&url, &[("csrf", &confirm.csrf().unwrap())])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
}

// ---- the receiver -------------------------------------------------------------------------

#[derive(Default)]
pub(crate) struct Inbox {
    /// (path, content type, body) in arrival order.
    pub(crate) got: Mutex<Vec<(String, String, String)>>,
    /// Answer 500 to this many requests first.
    fail_first: AtomicUsize,
    requests: AtomicUsize,
}

impl Inbox {
    pub(crate) fn sets(&self, path: &str) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, _, b)| b.clone())
            .collect()
    }
}

/// A minimal HTTPS server (HTTP/1.1, one request per connection) with the platform's
/// `localhost` certificate, issued by the sandbox CA the harness created.
pub(crate) struct Receiver {
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

fn tls_acceptor(p: &TestPlatform) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = p.dir.join("certs");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.join("server.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

impl Receiver {
    pub(crate) async fn start(p: &TestPlatform, port: u16, inbox: Arc<Inbox>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tls_acceptor(p);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body_start) = loop {
                        let Ok(n) = tls.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break (String::from_utf8_lossy(&buf[..i]).to_string(), i + 4);
                        }
                    };
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.trim()
                                    .eq_ignore_ascii_case(name)
                                    .then(|| v.trim().to_owned())
                            })
                            .unwrap_or_default()
                    };
                    let len: usize = header("content-length").parse().unwrap_or(0);
                    while buf.len() < body_start + len {
                        let Ok(n) = tls.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body =
                        String::from_utf8_lossy(&buf[body_start..body_start + len]).to_string();
                    let path = head
                        .lines()
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or_default()
                        .to_owned();
                    inbox.requests.fetch_add(1, Ordering::SeqCst);
                    let fail = inbox
                        .fail_first
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let status = if fail {
                        "500 Internal Server Error"
                    } else {
                        inbox
                            .got
                            .lock()
                            .unwrap()
                            .push((path, header("content-type"), body));
                        "202 Accepted"
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { port, task }
    }

    /// Close the port: further connections are refused.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub(crate) async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn published_keys(p: &TestPlatform) -> Vec<fapi_jose::Jwk> {
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&p.kit.ca_cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let jwks: Value = http
        .get(format!("{}/jwks", p.kit.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(jwks["keys"].clone()).unwrap()
}

/// Verify against the AS's published JWKS; the claims.
pub(crate) fn verified(set: &str, keys: &[fapi_jose::Jwk]) -> Value {
    let jws = fapi_jose::Unverified::parse(set).unwrap();
    jws.verify_with_set(keys)
        .expect("SET verifies against the JWKS");
    assert_eq!(jws.header.typ.as_deref(), Some("secevent+jwt"));
    assert!(jws.header.kid.as_deref().unwrap().starts_with("events-"));
    jws.claims
}

pub(crate) fn event_type(claims: &Value) -> String {
    claims["events"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone()
}

/// A second connection to the platform's database, to write events the way another
/// producer (payments) would.
async fn producer_store(p: &TestPlatform) -> SqlStore {
    let cfg = &p.state().config;
    SqlStore::connect(&cfg.database_url, cfg.database_schema.as_deref())
        .await
        .unwrap()
}

pub(crate) async fn spawn_fast() -> TestPlatform {
    TestPlatform::spawn_with(|c| {
        c.events_retry_base_ms = 100;
        c.events_poll_interval_ms = 50;
        c.events_delivery_timeout_ms = 2000;
    })
    .await
}

#[tokio::test]
async fn callbacks_survive_failures_and_outages_and_stop_after_revocation() {
    let p = spawn_fast().await;
    // Clients whose credentials follow the server clock (the customer's TOTP steps move
    // it): certificate authentication, and the DPoP client (its proofs use that clock).
    let inbox = Arc::new(Inbox::default());
    inbox.fail_first.store(2, Ordering::SeqCst);
    let rx = Receiver::start(&p, 0, inbox.clone()).await;
    let port = rx.port;
    let me = p.mtls.client_id.clone();
    let other = p.dpop.client_id.clone();

    let s = subscribe(
        &p,
        &p.mtls,
        Some(&format!("https://localhost:{port}/events")),
    )
    .await;
    assert_eq!(s.status, 201, "{:?}", s.body);
    let sub_id = s.body["Data"]["EventSubscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = subscribe(
        &p,
        &p.dpop,
        Some(&format!("https://localhost:{port}/other")),
    )
    .await;
    assert_eq!(o.status, 201, "{:?}", o.body);
    let other_sub = o.body["Data"]["EventSubscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Each TPP lists only its own.
    let l = call(
        &p.mtls,
        Method::GET,
        &rs(&p, &format!("{EVENTS}/event-subscriptions")),
        None,
    )
    .await;
    assert_eq!(l.status, 200);
    assert_eq!(
        l.body["Data"]["EventSubscription"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Another TPP's subscription is not found for this one.
    let d = call(
        &p.dpop,
        Method::DELETE,
        &rs(&p, &format!("{EVENTS}/event-subscriptions/{sub_id}")),
        None,
    )
    .await;
    assert_eq!(d.status, 400, "{:?}", d.body);

    // E1: consent A authorised. The receiver answers 500 twice, then goes down.
    let a = create_intent(&p, &p.mtls).await;
    authorise(&p, &p.mtls, &a).await;
    wait_for("two failed attempts", 20, || {
        inbox.requests.load(Ordering::SeqCst) >= 2
    })
    .await;
    rx.stop().await;
    // E2, E3 while the receiver is down: consent B authorised, then deleted by the TPP.
    let b = create_intent(&p, &p.mtls).await;
    authorise(&p, &p.mtls, &b).await;
    let del = call(
        &p.mtls,
        Method::DELETE,
        &rs(&p, &format!("{AISP}/account-access-consents/{b}")),
        None,
    )
    .await;
    assert_eq!(del.status, 204, "{:?}", del.body);
    // Let some attempts hit the closed port.
    let log_url = rs(
        &p,
        &format!("{EVENTS}/event-subscriptions/{sub_id}/deliveries"),
    );
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let log = call(&p.mtls, Method::GET, &log_url, None).await;
        assert_eq!(log.status, 200, "{:?}", log.body);
        let refused = log.body["Data"]["Attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a.get("StatusCode").is_none())
            .count();
        if refused >= 2 {
            break;
        }
        assert!(
            Instant::now() < end,
            "no failed connection logged: {:?}",
            log.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(inbox.sets("/events").is_empty());

    // Back up on the same port: everything arrives, in order.
    let rx = Receiver::start(&p, port, inbox.clone()).await;
    wait_for("E1..E3 after the outage", 30, || {
        inbox.sets("/events").len() >= 3
    })
    .await;

    // E4: the customer withdraws A on the dashboard.
    dashboard_revoke(&p, &a).await;
    wait_for("the revocation", 20, || inbox.sets("/events").len() >= 4).await;

    // After revocation nothing about A goes out but A's own lifecycle: an event about a
    // resource under A (as payments will write) is suppressed. An event for the other TPP
    // goes only to the other TPP.
    let producer = producer_store(&p).await;
    let now = p.clock.now();
    let under_a = producer
        .enqueue(
            &NewEvent {
                client_id: me.clone(),
                consent_id: Some(a.clone()),
                event_type: EVENT_RESOURCE_UPDATE.into(),
                rid: "pmt-under-a".into(),
                rty: "domestic-payment".into(),
                link: "/open-banking/v4.0/pisp/domestic-payments/pmt-under-a".into(),
                detail: json!({}),
                txn: "txn-a".into(),
                toe: now,
            },
            now * 1000,
        )
        .await
        .unwrap();
    let for_other = producer
        .enqueue(
            &NewEvent {
                client_id: other.clone(),
                consent_id: None,
                event_type: EVENT_RESOURCE_UPDATE.into(),
                rid: "pmt-other".into(),
                rty: "domestic-payment".into(),
                link: "/open-banking/v4.0/pisp/domestic-payments/pmt-other".into(),
                detail: json!({}),
                txn: "txn-o".into(),
                toe: now,
            },
            now * 1000,
        )
        .await
        .unwrap();
    wait_for("the other TPP's event", 20, || {
        !inbox.sets("/other").is_empty()
    })
    .await;
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let log = call(&p.mtls, Method::GET, &log_url, None).await;
        let st = log.body["Data"]["Deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["EventId"] == json!(under_a))
            .map(|d| d["State"].as_str().unwrap().to_owned());
        if st.as_deref() == Some("suppressed") {
            break;
        }
        assert!(Instant::now() < end, "not suppressed: {:?}", log.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let keys = published_keys(&p).await;
    let got: Vec<Value> = inbox
        .sets("/events")
        .iter()
        .map(|s| verified(s, &keys))
        .collect();
    let jtis: Vec<String> = got
        .iter()
        .map(|c| c["jti"].as_str().unwrap().into())
        .collect();
    assert_eq!(jtis.len(), 4, "{got:#?}");
    assert_eq!(jtis.iter().collect::<HashSet<_>>().len(), 4, "jti unique");
    assert!(!jtis.contains(&under_a) && !jtis.contains(&for_other));
    let summary: Vec<(String, String)> = got
        .iter()
        .map(|c| {
            (
                c["events"][event_type(c)]["subject"]["http://openbanking.org.uk/rid"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                event_type(c),
            )
        })
        .collect();
    let update = "urn:uk:org:openbanking:events:resource-update".to_owned();
    let revoked = "urn:uk:org:openbanking:events:consent-authorization-revoked".to_owned();
    assert_eq!(
        summary,
        vec![
            (a.clone(), update.clone()),
            (b.clone(), update.clone()),
            (b.clone(), revoked.clone()),
            (a.clone(), revoked.clone()),
        ],
        "every event, in event order"
    );
    for c in &got {
        assert_eq!(c["aud"], json!(me), "only this TPP's events");
        assert_eq!(c["iss"], json!(p.kit.issuer));
        assert!(c["iat"].is_i64() && c["toe"].is_i64() && c["txn"].is_string());
        assert!(c["sub"].as_str().unwrap().starts_with(&format!(
            "{}{AISP}/account-access-consents/",
            p.kit.resource_base_url.trim_end_matches('/')
        )));
    }
    assert_eq!(
        got[2]["events"][&revoked]["reason"],
        json!("revoked by the TPP")
    );
    assert_eq!(
        got[3]["events"][&revoked]["reason"],
        json!("revoked by the customer")
    );
    for (_, ct, _) in inbox.got.lock().unwrap().iter() {
        assert_eq!(ct, "application/jwt");
    }
    let theirs: Vec<Value> = inbox
        .sets("/other")
        .iter()
        .map(|s| verified(s, &keys))
        .collect();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["aud"], json!(other));
    assert_eq!(theirs[0]["jti"], json!(for_other));

    // The log shows the 500s, the refused connections and the successes.
    let log = call(&p.mtls, Method::GET, &log_url, None).await;
    let attempts = log.body["Data"]["Attempts"].as_array().unwrap();
    assert_eq!(
        attempts
            .iter()
            .filter(|a| a["StatusCode"] == json!(500))
            .count(),
        2,
        "{attempts:?}"
    );
    assert_eq!(
        attempts
            .iter()
            .filter(|a| a["StatusCode"] == json!(202))
            .count(),
        4
    );
    assert!(attempts.iter().all(|a| a["LatencyMs"].is_i64()));
    // Another TPP cannot read this log.
    let theirs = call(&p.dpop, Method::GET, &log_url, None).await;
    assert_eq!(theirs.status, 400);

    // Manual redelivery sends E1 again with the same jti.
    let r = call(
        &p.mtls,
        Method::POST,
        &rs(
            &p,
            &format!(
                "{EVENTS}/event-subscriptions/{sub_id}/deliveries/{}/redeliver",
                jtis[0]
            ),
        ),
        None,
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    wait_for("the redelivery", 20, || inbox.sets("/events").len() >= 5).await;
    let again = verified(&inbox.sets("/events")[4], &keys);
    assert_eq!(again["jti"], json!(jtis[0]));

    // Deleting the subscription stops deliveries to it.
    let d = call(
        &p.dpop,
        Method::DELETE,
        &rs(&p, &format!("{EVENTS}/event-subscriptions/{other_sub}")),
        None,
    )
    .await;
    assert_eq!(d.status, 204);
    producer.close().await;
    rx.stop().await;
    p.finish().await;
}

#[tokio::test]
async fn internal_callbacks_are_refused_unless_allowed() {
    let p = TestPlatform::spawn_with(|c| c.events_allow_private_callbacks = Some(false)).await;
    for bad in [
        "https://localhost:9999/cb",
        "https://127.0.0.1/cb",
        "https://[::1]/cb",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/cb",
        "http://8.8.8.8/cb",
    ] {
        let r = subscribe(&p, &p.pkjwt, Some(bad)).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert_eq!(
            r.body["Errors"][0]["ErrorCode"],
            json!("UK.OBIE.Field.Invalid")
        );
        assert_eq!(r.body["Errors"][0]["Path"], json!("Data.CallbackUrl"));
    }
    // A public address is fine; changing it to loopback is not.
    let ok = subscribe(&p, &p.pkjwt, Some("https://8.8.8.8/cb")).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    let id = ok.body["Data"]["EventSubscriptionId"].as_str().unwrap();
    let put = call(
        &p.pkjwt,
        Method::PUT,
        &rs(&p, &format!("{EVENTS}/event-subscriptions/{id}")),
        Some(
            &json!({"Data": {"EventSubscriptionId": id, "Version": "4.0",
                              "CallbackUrl": "https://localhost/cb"}}),
        ),
    )
    .await;
    assert_eq!(put.status, 400, "{:?}", put.body);
    // Unknown event types and versions are refused too.
    let r = call(
        &p.pkjwt,
        Method::POST,
        &rs(&p, &format!("{EVENTS}/event-subscriptions")),
        Some(&json!({"Data": {"Version": "4.0", "EventTypes": ["urn:x:made-up"]}})),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = call(
        &p.pkjwt,
        Method::POST,
        &rs(&p, &format!("{EVENTS}/event-subscriptions")),
        Some(&json!({"Data": {"Version": "3.1"}})),
    )
    .await;
    assert_eq!(r.status, 400);
    // A customer's (authorization-code) token cannot manage subscriptions.
    let t = p.tokens(&p.pkjwt).await;
    let r = p
        .pkjwt
        .resource(
            Method::GET,
            &rs(&p, &format!("{EVENTS}/event-subscriptions")),
            t.str("access_token").unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn polling_returns_pending_sets_and_acknowledges() {
    let p = spawn_fast().await;
    let s = subscribe(&p, &p.pkjwt, None).await;
    assert_eq!(s.status, 201, "{:?}", s.body);
    let poll_url = rs(&p, EVENTS);
    let poll = |tpp: &'static str, body: Value| {
        let p = &p;
        let url = poll_url.clone();
        async move {
            let tpp = if tpp == "me" { &p.pkjwt } else { &p.mtls };
            call(tpp, Method::POST, &url, Some(&body)).await
        }
    };
    let empty = poll("me", json!({"returnImmediately": true})).await;
    assert_eq!(empty.status, 200, "{:?}", empty.body);
    assert_eq!(empty.body, json!({"sets": {}, "moreAvailable": false}));

    // Two events: an intent deleted while awaiting authorisation, twice.
    for _ in 0..2 {
        let id = create_intent(&p, &p.pkjwt).await;
        let d = call(
            &p.pkjwt,
            Method::DELETE,
            &rs(&p, &format!("{AISP}/account-access-consents/{id}")),
            None,
        )
        .await;
        assert_eq!(d.status, 204);
    }
    let keys = published_keys(&p).await;
    let r = poll("me", json!({"maxEvents": 1})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let sets = r.body["sets"].as_object().unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(r.body["moreAvailable"], json!(true));
    let (jti1, set1) = sets.iter().next().unwrap();
    let c = verified(set1.as_str().unwrap(), &keys);
    assert_eq!(&c["jti"], &json!(jti1));
    assert_eq!(c["aud"], json!(p.pkjwt.client_id));
    // Not acknowledged yet: returned again. The other TPP sees none of it.
    let r = poll("me", json!({})).await;
    assert_eq!(r.body["sets"].as_object().unwrap().len(), 2);
    let theirs = poll("other", json!({})).await;
    assert_eq!(theirs.status, 200);
    assert!(theirs.body["sets"].as_object().unwrap().is_empty());
    // The other TPP cannot acknowledge them either.
    poll("other", json!({"ack": [jti1], "maxEvents": 0})).await;
    let r = poll("me", json!({})).await;
    assert_eq!(r.body["sets"].as_object().unwrap().len(), 2);
    let jti2 = r.body["sets"]
        .as_object()
        .unwrap()
        .keys()
        .find(|k| *k != jti1)
        .unwrap()
        .clone();
    // Ack one, report an error for the other: nothing left.
    let r = poll(
        "me",
        json!({"ack": [jti1], "setErrs": {jti2.clone(): {"err": "jwtAud", "description": "x"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body["sets"].as_object().unwrap().is_empty(),
        "{:?}",
        r.body
    );
    // Bad input gets the OB error shape.
    let bad = poll("me", json!({"maxEvents": 1000})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body["Errors"][0]["ErrorCode"],
        json!("UK.OBIE.Field.Invalid")
    );
    let bad = poll("me", json!({"unknown": 1})).await;
    assert_eq!(bad.status, 400);
    p.finish().await;
}

/// A dispatcher of the test's own over the platform's database (the platform's own is
/// switched off), so it can be killed mid-delivery.
async fn own_dispatcher(
    p: &TestPlatform,
    store: Arc<SqlStore>,
    timeout_ms: u64,
) -> resource_server::event_dispatch::Dispatcher {
    own_dispatcher_on(p, store, timeout_ms, Arc::new(resource_server::SystemClock)).await
}

/// The platform's clock as the RS reads it (tests step it forward).
struct PlatformClock(Arc<authz_server::clock::OffsetClock>);

impl resource_server::Clock for PlatformClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(self.0.now())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

async fn own_dispatcher_on(
    p: &TestPlatform,
    store: Arc<SqlStore>,
    timeout_ms: u64,
    clock: Arc<dyn resource_server::Clock>,
) -> resource_server::event_dispatch::Dispatcher {
    use resource_server::event_dispatch::{
        CallbackPolicy, Dispatcher, DispatcherConfig, SetSigner,
    };
    let key = authz_server::event_keys::load_or_create(&p.dir.join("keys"), 0).unwrap();
    let signer = Arc::new(SetSigner {
        key: Arc::new(key),
        issuer: p.kit.issuer.clone(),
        rs_base: p.kit.resource_base_url.trim_end_matches('/').to_owned(),
    });
    let cfg = DispatcherConfig {
        policy: CallbackPolicy {
            allow_private: true,
        },
        retry_base_ms: 100,
        timeout_ms,
        poll_interval_ms: 20,
        extra_roots_pem: vec![std::fs::read(p.dir.join("certs").join("ca.pem")).unwrap()],
        ..DispatcherConfig::default()
    };
    Dispatcher::new(store, signer, clock, cfg).unwrap()
}

/// A receiver that never answers the first request (the dispatcher is mid-delivery when
/// it dies) and accepts everything after.
async fn hanging_receiver(p: &TestPlatform, inbox: Arc<Inbox>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls_acceptor(p);
    let seen = Arc::new(AtomicUsize::new(0));
    let seen2 = seen.clone();
    // Relay: the first connection is held open unanswered; the rest go to a normal
    // receiver on another port.
    let normal = Receiver::start(p, 0, inbox).await;
    let normal_port = normal.port;
    tokio::spawn(async move {
        let _keep = normal;
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            if seen2.fetch_add(1, Ordering::SeqCst) == 0 {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut b = [0u8; 1024];
                        let _ = tls.read(&mut b).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                });
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", normal_port)).await
                else {
                    return;
                };
                let mut tcp = tcp;
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
            });
        }
    });
    (port, seen)
}

/// A platform that runs no dispatcher of its own, a receiver that holds every request
/// (`seen` counts them), the TPP subscribed to it, a store for test dispatchers, and one
/// event waiting for delivery (a revoked consent's).
async fn one_event_for_a_hanging_receiver() -> Pending {
    let p = TestPlatform::spawn_with(|c| c.events_dispatcher = false).await;
    let inbox = Arc::new(Inbox::default());
    let (port, seen) = hanging_receiver(&p, inbox.clone()).await;
    let s = subscribe(
        &p,
        &p.mtls,
        Some(&format!("https://localhost:{port}/events")),
    )
    .await;
    assert_eq!(s.status, 201, "{:?}", s.body);
    let store = Arc::new(producer_store(&p).await);
    let id = create_intent(&p, &p.mtls).await;
    let d = call(
        &p.mtls,
        Method::DELETE,
        &rs(&p, &format!("{AISP}/account-access-consents/{id}")),
        None,
    )
    .await;
    assert_eq!(d.status, 204);
    Pending {
        p,
        inbox,
        seen,
        store,
        port,
        id,
    }
}

/// What [`one_event_for_a_hanging_receiver`] set up.
struct Pending {
    p: TestPlatform,
    inbox: Arc<Inbox>,
    seen: Arc<AtomicUsize>,
    store: Arc<SqlStore>,
    /// The hanging receiver's port.
    port: u16,
    /// The revoked consent.
    id: String,
}

#[tokio::test]
async fn a_dispatcher_killed_mid_delivery_loses_nothing_and_parallel_dispatchers_never_double_deliver()
 {
    let Pending {
        p,
        inbox,
        seen,
        store,
        port,
        id,
    } = one_event_for_a_hanging_receiver().await;

    // Dispatcher A takes the delivery and is killed while the receiver holds the request.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let a = resource_server::event_dispatch::spawn_dispatcher(
        own_dispatcher(&p, store.clone(), 1000).await,
        stop_rx.clone(),
    );
    wait_for("the first attempt in flight", 20, || {
        seen.load(Ordering::SeqCst) >= 1
    })
    .await;
    a.abort();
    let _ = a.await;
    // B starts at once but must wait for A's lease to run out; then it delivers.
    let b = resource_server::event_dispatch::spawn_dispatcher(
        own_dispatcher(&p, store.clone(), 1000).await,
        stop_rx.clone(),
    );
    wait_for("redelivery after the lease", 30, || {
        inbox.sets("/events").len() == 1
    })
    .await;
    let keys = published_keys(&p).await;
    let c = verified(&inbox.sets("/events")[0], &keys);
    assert_eq!(
        c["sub"].as_str().unwrap().rsplit('/').next(),
        Some(id.as_str())
    );

    // Many events over many subscriptions, three dispatchers at once: each event arrives
    // exactly once per subscription.
    let mut subs = Vec::new();
    for i in 0..4 {
        let r = subscribe(&p, &p.mtls, Some(&format!("https://localhost:{port}/s{i}"))).await;
        subs.push(
            r.body["Data"]["EventSubscriptionId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let now = p.clock.now();
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            store
                .enqueue(
                    &NewEvent {
                        client_id: p.mtls.client_id.clone(),
                        consent_id: None,
                        event_type: EVENT_RESOURCE_UPDATE.into(),
                        rid: format!("pmt-{i}"),
                        rty: "domestic-payment".into(),
                        link: format!("/open-banking/v4.0/pisp/domestic-payments/pmt-{i}"),
                        detail: json!({}),
                        txn: format!("txn-{i}"),
                        toe: now + i,
                    },
                    now * 1000,
                )
                .await
                .unwrap(),
        );
    }
    let mut more = Vec::new();
    for _ in 0..2 {
        more.push(resource_server::event_dispatch::spawn_dispatcher(
            own_dispatcher(&p, store.clone(), 1000).await,
            stop_rx.clone(),
        ));
    }
    // 40 to /events and to each of /s0../s3.
    wait_for("200 deliveries", 60, || {
        inbox.got.lock().unwrap().len() > 40 * 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = inbox.got.lock().unwrap().clone();
    assert_eq!(got.len(), 201, "no duplicates");
    for path in ["/events", "/s0", "/s1", "/s2", "/s3"] {
        let jtis: Vec<String> = got
            .iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, _, b)| verified(b, &keys)["jti"].as_str().unwrap().to_owned())
            .filter(|j| ids.contains(j))
            .collect();
        assert_eq!(jtis, ids, "{path}: each once, in event order");
    }
    let _ = stop_tx.send(true);
    let _ = b.await;
    for m in more {
        let _ = m.await;
    }
    p.finish().await;
}

/// Measurement, not a check (run with `--ignored --nocapture`): events delivered per
/// second through the platform's own dispatcher, and the delay from a consent change to
/// its arrival at rest.
#[tokio::test]
#[ignore]
async fn bench_delivery_rate_and_delay() {
    let p = TestPlatform::spawn().await;
    let inbox = Arc::new(Inbox::default());
    let rx = Receiver::start(&p, 0, inbox.clone()).await;
    let subs = 8;
    for i in 0..subs {
        let r = subscribe(
            &p,
            &p.mtls,
            Some(&format!("https://localhost:{}/s{i}", rx.port)),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    // Delay at rest: one change at a time, time to arrival.
    let mut delays = Vec::new();
    for _ in 0..10 {
        let id = create_intent(&p, &p.mtls).await;
        let before = inbox.got.lock().unwrap().len();
        let t0 = Instant::now();
        let d = call(
            &p.mtls,
            Method::DELETE,
            &rs(&p, &format!("{AISP}/account-access-consents/{id}")),
            None,
        )
        .await;
        assert_eq!(d.status, 204);
        wait_for("arrival", 20, || {
            inbox.got.lock().unwrap().len() >= before + subs
        })
        .await;
        delays.push(t0.elapsed().as_millis());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    delays.sort();
    eprintln!(
        "change-to-delivery delay (incl. the DELETE round trip), ms: median {} max {} (all {delays:?})",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    // Throughput: N events for each of 8 subscriptions.
    let store = producer_store(&p).await;
    let n: i64 = 250;
    let now = p.clock.now();
    let before = inbox.got.lock().unwrap().len();
    let t0 = Instant::now();
    for i in 0..n {
        store
            .enqueue(
                &NewEvent {
                    client_id: p.mtls.client_id.clone(),
                    consent_id: None,
                    event_type: EVENT_RESOURCE_UPDATE.into(),
                    rid: format!("pmt-{i}"),
                    rty: "domestic-payment".into(),
                    link: format!("/open-banking/v4.0/pisp/domestic-payments/pmt-{i}"),
                    detail: json!({}),
                    txn: format!("txn-{i}"),
                    toe: now,
                },
                now * 1000,
            )
            .await
            .unwrap();
    }
    let total = n as usize * subs;
    wait_for("all deliveries", 600, || {
        inbox.got.lock().unwrap().len() >= before + total
    })
    .await;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{total} deliveries ({n} events x {subs} subscriptions) in {secs:.2} s: {:.0} deliveries/s",
        total as f64 / secs
    );
    store.close().await;
    rx.stop().await;
    p.finish().await;
}

/// A subscription whose host now resolves to loopback (as after DNS rebinding: it was
/// public when written) or names a loopback address is never connected to when the
/// deployment refuses internal callbacks: the check is repeated at connect time.
#[tokio::test]
async fn delivery_rechecks_the_callback_address() {
    let p = TestPlatform::spawn_with(|c| {
        c.events_allow_private_callbacks = Some(false);
        c.events_retry_base_ms = 100;
        c.events_poll_interval_ms = 50;
    })
    .await;
    let inbox = Arc::new(Inbox::default());
    let rx = Receiver::start(&p, 0, inbox.clone()).await;
    let producer = producer_store(&p).await;
    let mut subs = Vec::new();
    for url in [
        format!("https://localhost:{}/rebound", rx.port),
        format!("https://127.0.0.1:{}/literal", rx.port),
    ] {
        let s = authz_store::EventSubscription {
            id: format!("esub-{}", uuid::Uuid::new_v4()),
            client_id: p.mtls.client_id.clone(),
            callback_url: Some(url),
            version: "4.0".into(),
            event_types: vec![],
            created_at: 0,
            updated_at: 0,
        };
        producer.insert_subscription(&s).await.unwrap();
        subs.push(s.id);
    }
    let id = create_intent(&p, &p.mtls).await;
    let d = call(
        &p.mtls,
        Method::DELETE,
        &rs(&p, &format!("{AISP}/account-access-consents/{id}")),
        None,
    )
    .await;
    assert_eq!(d.status, 204);
    for sub in &subs {
        let url = rs(
            &p,
            &format!("{EVENTS}/event-subscriptions/{sub}/deliveries"),
        );
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let log = call(&p.mtls, Method::GET, &url, None).await;
            assert_eq!(log.status, 200, "{:?}", log.body);
            let attempts = log.body["Data"]["Attempts"].as_array().unwrap().clone();
            if attempts.len() >= 2 {
                for a in &attempts {
                    assert!(a.get("StatusCode").is_none(), "{a:?}");
                    assert!(a["Error"].as_str().unwrap().contains("policy"), "{a:?}");
                }
                break;
            }
            assert!(Instant::now() < end, "no attempt logged: {:?}", log.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(inbox.requests.load(Ordering::SeqCst), 0, "never connected");
    producer.close().await;
    rx.stop().await;
    p.finish().await;
}

#[tokio::test]
async fn subscriptions_per_client_are_bounded() {
    let p = TestPlatform::spawn().await;
    for i in 0..resource_server::events::MAX_SUBSCRIPTIONS {
        let r = subscribe(&p, &p.pkjwt, Some(&format!("https://localhost:9/cb{i}"))).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let r = subscribe(&p, &p.pkjwt, None).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // Another client is not affected.
    let r = subscribe(&p, &p.mtls, None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    p.finish().await;
}

/// The platform clock stepping forward while a delivery is in flight (the tests step it
/// 30 s for every fresh TOTP code) must not end that delivery's lease: before leases had
/// their own wall clock, the next claiming round took the delivery again and the receiver
/// got the event twice (the flaky duplicate of the alerts test).
#[tokio::test]
async fn a_clock_step_during_a_delivery_does_not_send_it_again() {
    let Pending {
        p,
        inbox,
        seen,
        store,
        ..
    } = one_event_for_a_hanging_receiver().await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // A 4 s attempt timeout: a 13 s lease, well inside the clock step below.
    let clock: Arc<dyn resource_server::Clock> = Arc::new(PlatformClock(p.clock.clone()));
    let task = resource_server::event_dispatch::spawn_dispatcher(
        own_dispatcher_on(&p, store.clone(), 4000, clock).await,
        stop_rx,
    );
    wait_for("the first attempt in flight", 20, || {
        seen.load(Ordering::SeqCst) >= 1
    })
    .await;
    p.clock.advance(120);
    // About a hundred claiming rounds (20 ms poll) while the receiver holds the request.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the in-flight delivery was claimed and sent again"
    );
    // The attempt times out; the retry delivers the event, once.
    wait_for("the retry", 30, || !inbox.sets("/events").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let keys = published_keys(&p).await;
    let jtis: Vec<String> = inbox
        .sets("/events")
        .iter()
        .map(|b| verified(b, &keys)["jti"].as_str().unwrap().to_owned())
        .collect();
    let unique: HashSet<&String> = jtis.iter().collect();
    assert_eq!(unique.len(), jtis.len(), "{jtis:?}");
    let _ = stop_tx.send(true);
    let _ = task.await;
    p.finish().await;
}
