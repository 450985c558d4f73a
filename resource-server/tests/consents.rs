//! Account-access consents over the shared store (`authz_store::SqlStore`, in memory),
//! the store-backed consent source, the shared DPoP replay store, the verified-token
//! cache and per-client throttling, driven in-process through `router()` with real JWT
//! access tokens. Every security rule has a negative test that fails if it is removed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::{
    AuditEntry, ConsentRecord, ConsentStatus as Stored, DurableStore, EphemeralStore,
    RefreshTokenRecord, SqlStore, StoreError, StoreResult,
};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use core_bank::{GeneratorConfig, SandboxBank, generate};
use fapi_jose::{Alg, SigningKey};
use openbanking::{AccountAccessDetails, KIND_ACCOUNT_ACCESS, Source};
use resource_server::*;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use time::macros::{date, datetime};
use tower::ServiceExt;

const ISS: &str = "https://localhost:8443";
const AUD: &str = "https://localhost:8445";
const CLIENT: &str = "tpp-1";
const OTHER_CLIENT: &str = "tpp-2";
const ALICE_SUB: &str = "9b1c0d7e-alice";
const CERT_A: &[u8] = b"tpp certificate A (DER stand-in)";
const CERT_B: &[u8] = b"tpp certificate B (DER stand-in)";
const START: OffsetDateTime = datetime!(2026-11-20 10:00 +3);
const P: &str = "/open-banking/v4.0/aisp";

struct TestClock(Mutex<OffsetDateTime>);
impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

struct Env {
    app: Router,
    key: Arc<SigningKey>,
    store: Arc<SqlStore>,
    clock: Arc<TestClock>,
    verifier: Arc<JwtVerifier>,
    bank: Arc<SandboxBank>,
    alice: Vec<core_bank::Account>,
    n: AtomicU32,
}

struct Opts {
    rate_limit: Option<RateLimit>,
    replay: Option<Arc<dyn EphemeralStore>>,
}

async fn env() -> Env {
    env_with(
        None,
        Opts {
            rate_limit: None,
            replay: None,
        },
    )
    .await
}

/// A resource-server instance; `shared` reuses another instance's store, bank, clock and
/// signing key (a second instance of the same deployment).
async fn env_with(shared: Option<&Env>, opts: Opts) -> Env {
    let (store, bank, clock, key) = match shared {
        Some(e) => (
            e.store.clone(),
            e.bank.clone(),
            e.clock.clone(),
            e.key.clone(),
        ),
        None => {
            let bank = Arc::new(SandboxBank::new(
                generate(&GeneratorConfig::sandbox(date!(2026 - 11 - 20))).unwrap(),
            ));
            (
                Arc::new(SqlStore::connect("sqlite::memory:", None).await.unwrap()),
                bank,
                Arc::new(TestClock(Mutex::new(START))),
                Arc::new(SigningKey::generate(Alg::ES256, "as-key-1").unwrap()),
            )
        }
    };
    let alice = bank.read(|b| {
        let a = b.customer_by_username("alice").unwrap().id.clone();
        b.accounts_of(&a)
    });
    if shared.is_none() {
        bank.link_customer(ALICE_SUB, &alice[0].customer_id)
            .unwrap();
    }
    let mut verifier = JwtVerifier::new(
        JwtVerifierConfig::new(ISS, AUD),
        vec![key.public_jwk()],
        Arc::new(StoreConsentSource::new(store.clone())),
        clock.clone(),
    );
    if let Some(r) = opts.replay {
        verifier = verifier.with_replay_store(r);
    }
    let verifier = Arc::new(verifier);
    let mut state = AppState::new(
        bank.clone(),
        verifier.clone(),
        store.clone(),
        clock.clone(),
        AUD,
    );
    state.rate_limit = opts.rate_limit;
    Env {
        app: router(state),
        key,
        store,
        clock,
        verifier,
        bank,
        alice,
        n: AtomicU32::new(0),
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

fn error_code(b: &Value) -> &str {
    b["Errors"][0]["ErrorCode"].as_str().unwrap_or("")
}

impl Env {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn advance(&self, d: time::Duration) {
        *self.clock.0.lock().unwrap() += d;
    }

    fn jti(&self) -> String {
        format!("jti-{}", self.n.fetch_add(1, Ordering::Relaxed))
    }

    /// Claims of a client-credentials token (`sub` = `client_id`, no consent).
    fn cc_claims(&self, client: &str) -> Value {
        let now = self.now().unix_timestamp();
        json!({
            "iss": ISS, "sub": client, "aud": AUD, "client_id": client,
            "iat": now - 5, "exp": now + 300, "jti": self.jti(), "scope": "accounts",
            "cnf": {"x5t#S256": fapi_jose::x5t_s256(CERT_A)},
        })
    }

    fn cc(&self, client: &str) -> String {
        self.sign(&self.cc_claims(client))
    }

    /// Claims of alice's authorization-code token under `consent`.
    fn ac_claims(&self, consent: &str) -> Value {
        let now = self.now().unix_timestamp();
        json!({
            "iss": ISS, "sub": ALICE_SUB, "aud": AUD, "client_id": CLIENT,
            "iat": now - 5, "exp": now + 300, "jti": self.jti(), "scope": "openid accounts",
            "cnf": {"x5t#S256": fapi_jose::x5t_s256(CERT_A)}, "consent_id": consent,
        })
    }

    fn ac(&self, consent: &str) -> String {
        self.sign(&self.ac_claims(consent))
    }

    fn sign(&self, claims: &Value) -> String {
        self.key.sign_jwt(Some("at+jwt"), claims).unwrap()
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        cert: Option<&[u8]>,
        body: Option<(&str, String)>,
    ) -> Resp {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some((ct, b)) => {
                if !ct.is_empty() {
                    r = r.header("content-type", ct);
                }
                r = r.header("content-length", b.len());
                Body::from(b)
            }
            None => Body::empty(),
        };
        let mut req = r.body(body).unwrap();
        if let Some(c) = cert {
            req.extensions_mut().insert(PeerCertificate(Arc::from(c)));
        }
        self.send(req).await
    }

    async fn post_consent(&self, token: &str, body: Value) -> Resp {
        self.call(
            "POST",
            &format!("{P}/account-access-consents"),
            Some(token),
            Some(CERT_A),
            Some(("application/json", body.to_string())),
        )
        .await
    }

    async fn get_consent(&self, token: &str, id: &str) -> Resp {
        self.call(
            "GET",
            &format!("{P}/account-access-consents/{id}"),
            Some(token),
            Some(CERT_A),
            None,
        )
        .await
    }

    async fn delete_consent(&self, token: &str, id: &str) -> Resp {
        self.call(
            "DELETE",
            &format!("{P}/account-access-consents/{id}"),
            Some(token),
            Some(CERT_A),
            None,
        )
        .await
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), Some(CERT_A), None)
            .await
    }

    /// Creates a consent through the API and returns its id.
    async fn create(&self, permissions: &[&str]) -> String {
        let exp = self.now() + time::Duration::days(30);
        let r = self
            .post_consent(
                &self.cc(CLIENT),
                json!({"Data": {"Permissions": permissions,
                    "ExpirationDateTime": exp.format(&time::format_description::well_known::Rfc3339).unwrap()},
                    "Risk": {}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["Data"]["ConsentId"].as_str().unwrap().to_owned()
    }

    /// What the authorization server does when alice authorises: customer, accounts.
    async fn authorise(&self, id: &str, accounts: Option<Vec<String>>) {
        let r = self.store.find_consent(id).await.unwrap().unwrap();
        let mut d = AccountAccessDetails::from_value(&r.details).unwrap();
        d.account_ids = accounts;
        d.status_update_date_time = self.now();
        let ok = self
            .store
            .update_consent(
                id,
                &[Stored::AwaitingAuthorisation],
                Stored::Authorised,
                Some(ALICE_SUB),
                Some(&d.to_value()),
                &audit(id, self.now(), "customer:alice", "authorised"),
            )
            .await
            .unwrap();
        assert!(ok);
    }

    /// A consent record written straight to the store (as the AS would).
    async fn insert(
        &self,
        kind: &str,
        status: Stored,
        accounts: Option<Vec<String>>,
        expiration: Option<OffsetDateTime>,
    ) -> String {
        let id = format!("aac-direct-{}", self.jti());
        let req = openbanking::parse_intent_body(
            &json!({"Data": {"Permissions": ["ReadAccountsDetail", "ReadBalances"]}, "Risk": {}}),
            self.now(),
        )
        .unwrap();
        let mut d = AccountAccessDetails::new(Source::Rar, &req, self.now());
        d.account_ids = accounts;
        d.expiration_date_time = expiration;
        let rec = ConsentRecord {
            id: id.clone(),
            client_id: CLIENT.into(),
            customer_id: Some(ALICE_SUB.into()),
            kind: kind.into(),
            scopes: "openid accounts".into(),
            status,
            details: d.to_value(),
            created_at: self.now().unix_timestamp(),
            updated_at: self.now().unix_timestamp(),
            expires_at: None,
        };
        self.store
            .insert_consent(&rec, &audit(&id, self.now(), "system", "created"))
            .await
            .unwrap();
        id
    }
}

fn audit(id: &str, at: OffsetDateTime, actor: &str, action: &str) -> AuditEntry {
    AuditEntry {
        consent_id: id.into(),
        at: at.unix_timestamp(),
        actor: actor.into(),
        action: action.into(),
        detail: String::new(),
    }
}

/// RFC 3339 in UTC, as the consent API renders date-times.
fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn account_ids(b: &Value) -> Vec<String> {
    b["Data"]["Account"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AccountId"].as_str().unwrap().to_owned())
        .collect()
}

// ---- lifecycle ------------------------------------------------------------------------------

#[tokio::test]
async fn consent_lifecycle_create_read_authorise_use_delete() {
    let e = env().await;
    let exp = e.now() + time::Duration::days(90);
    let from = datetime!(2026-01-01 0:00 UTC);
    let to = datetime!(2026-12-31 23:59:59 UTC);
    let r = e
        .post_consent(
            &e.cc(CLIENT),
            json!({"Data": {
                "Permissions": ["ReadAccountsBasic", "ReadBalances", "ReadTransactionsDetail", "ReadTransactionsCredits"],
                "ExpirationDateTime": rfc3339(exp),
                "TransactionFromDateTime": rfc3339(from),
                "TransactionToDateTime": rfc3339(to)}, "Risk": {}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.headers.contains_key("x-fapi-interaction-id"));
    assert_eq!(r.headers["cache-control"], "no-store");
    let d = &r.body["Data"];
    let id = d["ConsentId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("aac-"));
    assert_eq!(d["Status"], "AWAU");
    assert_eq!(d["CreationDateTime"], rfc3339(e.now()));
    assert_eq!(d["StatusUpdateDateTime"], rfc3339(e.now()));
    assert_eq!(
        d["Permissions"],
        json!([
            "ReadAccountsBasic",
            "ReadBalances",
            "ReadTransactionsDetail",
            "ReadTransactionsCredits"
        ])
    );
    assert_eq!(d["ExpirationDateTime"], rfc3339(exp));
    assert_eq!(d["TransactionFromDateTime"], rfc3339(from));
    assert_eq!(d["TransactionToDateTime"], rfc3339(to));
    assert!(d.get("StatusReason").is_none());
    assert_eq!(r.body["Risk"], json!({}));
    assert_eq!(r.body["Meta"], json!({}));
    assert_eq!(
        r.body["Links"]["Self"],
        format!("{AUD}{P}/account-access-consents/{id}")
    );
    // Stored as the AS expects it.
    let rec = e.store.find_consent(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            rec.kind.as_str(),
            rec.scopes.as_str(),
            rec.client_id.as_str(),
            rec.status,
            rec.customer_id.clone(),
            rec.expires_at
        ),
        (
            KIND_ACCOUNT_ACCESS,
            "accounts",
            CLIENT,
            Stored::AwaitingAuthorisation,
            None,
            Some(exp.unix_timestamp())
        )
    );
    let trail = e.store.list_audit(&id).await.unwrap();
    assert_eq!(trail[0].actor, format!("client:{CLIENT}"));
    assert_eq!(trail[0].action, "created");
    assert!(trail[0].detail.contains("ReadBalances"));
    // Read back: the same document.
    let g = e.get_consent(&e.cc(CLIENT), &id).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body, r.body);
    // Awaiting authorisation: the consent grants nothing yet.
    assert_eq!(
        e.get(&format!("{P}/accounts"), &e.ac(&id)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Alice authorises one account.
    let picked = e.alice[1].id.clone();
    e.authorise(&id, Some(vec![picked.clone()])).await;
    let g = e.get_consent(&e.cc(CLIENT), &id).await;
    assert_eq!(g.body["Data"]["Status"], "AUTH");
    assert!(
        !g.body.to_string().contains(&picked),
        "no accounts in the consent"
    );
    let at = e.ac(&id);
    let a = e.get(&format!("{P}/accounts"), &at).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(account_ids(&a.body), vec![picked.clone()]);
    assert_eq!(
        e.get(&format!("{P}/accounts/{}/balances", e.alice[0].id), &at)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // A refresh token issued under it.
    e.store
        .insert_refresh_token(&RefreshTokenRecord {
            digest: "rt-digest-1".into(),
            client_id: CLIENT.into(),
            consent_id: Some(id.clone()),
            subject: ALICE_SUB.into(),
            scope: "openid accounts".into(),
            cnf: json!({}),
            auth: json!({}),
            created_at: e.now().unix_timestamp(),
            expires_at: e.now().unix_timestamp() + 86400,
            revoked_at: None,
        })
        .await
        .unwrap();
    // The TPP deletes it.
    let del = e.delete_consent(&e.cc(CLIENT), &id).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.body);
    assert!(del.headers.contains_key("x-fapi-interaction-id"));
    let rec = e.store.find_consent(&id).await.unwrap().unwrap();
    assert_eq!(rec.status, Stored::Revoked);
    assert!(
        e.store
            .find_refresh_token("rt-digest-1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    let trail = e.store.list_audit(&id).await.unwrap();
    let last = trail.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("client:tpp-1", "revoked")
    );
    let g = e.get_consent(&e.cc(CLIENT), &id).await;
    assert_eq!(g.body["Data"]["Status"], "CANC");
    assert_eq!(
        g.body["Data"]["StatusReason"][0]["StatusReasonCode"],
        consents::REASON_TPP_REVOKED
    );
    assert!(g.body["Data"]["StatusReason"][0]["StatusReasonDescription"].is_string());
    // The customer's token stops working (no cache in this instance).
    let a = e.get(&format!("{P}/accounts"), &at).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&a.body), "UK.OBIE.Resource.InvalidConsentStatus");
    // A second delete is refused.
    let del = e.delete_consent(&e.cc(CLIENT), &id).await;
    assert_eq!(del.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_code(&del.body),
        "UK.OBIE.Resource.InvalidConsentStatus"
    );
}

#[tokio::test]
async fn create_validates_content_type_json_and_the_intent() {
    let e = env().await;
    let t = e.cc(CLIENT);
    let path = format!("{P}/account-access-consents");
    let ok_body = json!({"Data": {"Permissions": ["ReadBalances"]}, "Risk": {}}).to_string();
    // Wrong content type (the header middleware), and none at all with no body (handler).
    let r = e
        .call(
            "POST",
            &path,
            Some(&t),
            Some(CERT_A),
            Some(("text/plain", ok_body.clone())),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = e
        .call(
            "POST",
            &path,
            Some(&t),
            Some(CERT_A),
            Some(("", String::new())),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.body);
    assert_eq!(r.body["Errors"][0]["Path"], "Content-Type");
    // Malformed JSON.
    let r = e
        .call(
            "POST",
            &path,
            Some(&t),
            Some(CERT_A),
            Some(("application/json", "{\"Data\":".into())),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&r.body), "UK.OBIE.Field.Invalid");
    assert!(r.headers.contains_key("x-fapi-interaction-id"));
    let future = rfc3339(e.now() + time::Duration::days(1));
    for (data, code, path) in [
        (
            json!({"Permissions": ["ReadPAN"]}),
            "UK.OBIE.Field.Invalid",
            "Data.Permissions",
        ),
        (
            json!({"Permissions": ["ReadTransactionsBasic"]}),
            "UK.OBIE.Field.Invalid",
            "Data.Permissions",
        ),
        (
            json!({"Permissions": ["ReadTransactionsCredits", "ReadBalances"]}),
            "UK.OBIE.Field.Invalid",
            "Data.Permissions",
        ),
        (
            json!({"Permissions": ["ReadBalances"], "ExpirationDateTime": rfc3339(e.now() - time::Duration::minutes(1))}),
            "UK.OBIE.Field.InvalidDate",
            "Data.ExpirationDateTime",
        ),
        (
            json!({"Permissions": ["ReadBalances"], "ExpirationDateTime": future, "Extra": 1}),
            "UK.OBIE.Field.Unexpected",
            "Data.Extra",
        ),
        (
            json!({"Permissions": ["ReadBalances"], "TransactionFromDateTime": "2026-02-01T00:00:00Z", "TransactionToDateTime": "2026-01-01T00:00:00Z"}),
            "UK.OBIE.Field.InvalidDate",
            "Data.TransactionFromDateTime",
        ),
        (json!({}), "UK.OBIE.Field.Missing", "Data.Permissions"),
    ] {
        let r = e.post_consent(&t, json!({"Data": data, "Risk": {}})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{data}");
        assert_eq!(error_code(&r.body), code, "{data}");
        assert_eq!(r.body["Errors"][0]["Path"], path, "{data}");
    }
    let r = e
        .post_consent(&t, json!({"Data": {"Permissions": ["ReadBalances"]}}))
        .await;
    assert_eq!(
        (r.status, error_code(&r.body)),
        (StatusCode::BAD_REQUEST, "UK.OBIE.Field.Missing")
    );
    assert_eq!(r.body["Errors"][0]["Path"], "Risk");
}

#[tokio::test]
async fn consents_are_visible_only_to_their_client() {
    let e = env().await;
    let id = e.create(&["ReadBalances"]).await;
    let other = e.cc(OTHER_CLIENT);
    let unknown = e.get_consent(&other, "aac-does-not-exist").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&unknown.body), "UK.OBIE.Resource.NotFound");
    for r in [
        e.get_consent(&other, &id).await,
        e.delete_consent(&other, &id).await,
    ] {
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&r.body), "UK.OBIE.Resource.NotFound");
        // Indistinguishable from an unknown id.
        assert_eq!(r.body["Errors"], unknown.body["Errors"]);
    }
    assert_eq!(
        e.store.find_consent(&id).await.unwrap().unwrap().status,
        Stored::AwaitingAuthorisation
    );
    // Another kind of consent of the same client is not an account-access consent.
    let oauth = e.insert("oauth", Stored::Authorised, None, None).await;
    let r = e.get_consent(&e.cc(CLIENT), &oauth).await;
    assert_eq!(
        (r.status, error_code(&r.body)),
        (StatusCode::BAD_REQUEST, "UK.OBIE.Resource.NotFound")
    );
    let r = e.delete_consent(&e.cc(CLIENT), &oauth).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        e.store.find_consent(&oauth).await.unwrap().unwrap().status,
        Stored::Authorised
    );
}

#[tokio::test]
async fn consent_endpoints_need_a_client_credentials_token() {
    let e = env().await;
    let id = e.create(&["ReadBalances"]).await;
    e.authorise(&id, Some(vec![e.alice[0].id.clone()])).await;
    let body = json!({"Data": {"Permissions": ["ReadBalances"]}, "Risk": {}});
    // The customer's authorization-code token (consent_id, sub = customer).
    let ac = e.ac(&id);
    for r in [
        e.post_consent(&ac, body.clone()).await,
        e.get_consent(&ac, &id).await,
        e.delete_consent(&ac, &id).await,
    ] {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    }
    // sub = client but carrying a consent; sub ≠ client without one.
    let mut c = e.cc_claims(CLIENT);
    c["consent_id"] = json!(id);
    assert_eq!(
        e.get_consent(&e.sign(&c), &id).await.status,
        StatusCode::FORBIDDEN
    );
    let mut c = e.cc_claims(CLIENT);
    c["sub"] = json!(ALICE_SUB);
    assert_eq!(
        e.get_consent(&e.sign(&c), &id).await.status,
        StatusCode::FORBIDDEN
    );
    // No `accounts` scope.
    let mut c = e.cc_claims(CLIENT);
    c["scope"] = json!("payments");
    assert_eq!(
        e.post_consent(&e.sign(&c), body.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    // Not sender-constrained / another certificate / no token.
    let mut c = e.cc_claims(CLIENT);
    c.as_object_mut().unwrap().remove("cnf");
    assert_eq!(
        e.post_consent(&e.sign(&c), body.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = e
        .call(
            "GET",
            &format!("{P}/account-access-consents/{id}"),
            Some(&e.cc(CLIENT)),
            Some(CERT_B),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = e
        .call(
            "GET",
            &format!("{P}/account-access-consents/{id}"),
            None,
            Some(CERT_A),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The store did not change through any of these.
    assert_eq!(
        e.store.find_consent(&id).await.unwrap().unwrap().status,
        Stored::Authorised
    );
    // And a client-credentials token reads no account data.
    let cc = e.cc(CLIENT);
    for path in ["/accounts", "/balances"] {
        let r = e.get(&format!("{P}{path}"), &cc).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
}

// ---- the store-backed consent source --------------------------------------------------------

#[tokio::test]
async fn store_consent_source_grants_exactly_what_was_authorised() {
    let e = env().await;
    let picked = vec![e.alice[0].id.clone(), e.alice[2].id.clone()];
    let c = e
        .insert(
            KIND_ACCOUNT_ACCESS,
            Stored::Authorised,
            Some(picked.clone()),
            None,
        )
        .await;
    let r = e.get(&format!("{P}/accounts"), &e.ac(&c)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(account_ids(&r.body), picked);
    // Detail granted: identification shown; a permission not granted: 403.
    assert!(r.body["Data"]["Account"][0]["Account"].is_array());
    assert_eq!(
        e.get(&format!("{P}/party"), &e.ac(&c)).await.status,
        StatusCode::FORBIDDEN
    );
    // Authorised with no account list: no account at all.
    let none = e
        .insert(KIND_ACCOUNT_ACCESS, Stored::Authorised, None, None)
        .await;
    let r = e.get(&format!("{P}/accounts"), &e.ac(&none)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(account_ids(&r.body).is_empty());
    assert_eq!(
        e.get(
            &format!("{P}/accounts/{}/balances", e.alice[0].id),
            &e.ac(&none)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // Revoked, rejected, awaiting, consumed, expired by status and by date: 401.
    let past = e.now() - time::Duration::seconds(1);
    for (status, exp) in [
        (Stored::Revoked, None),
        (Stored::Rejected, None),
        (Stored::AwaitingAuthorisation, None),
        (Stored::Consumed, None),
        (Stored::Expired, None),
        (Stored::Authorised, Some(past)),
    ] {
        let id = e
            .insert(KIND_ACCOUNT_ACCESS, status, Some(picked.clone()), exp)
            .await;
        let r = e.get(&format!("{P}/accounts"), &e.ac(&id)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{status:?} {exp:?}");
    }
    // Another kind of consent grants no permission.
    let oauth = e
        .insert("oauth", Stored::Authorised, Some(picked.clone()), None)
        .await;
    assert_eq!(
        e.get(&format!("{P}/accounts"), &e.ac(&oauth)).await.status,
        StatusCode::FORBIDDEN
    );
    // An unknown consent id.
    assert_eq!(
        e.get(&format!("{P}/accounts"), &e.ac("aac-nope"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Another client's token naming this consent.
    let mut claims = e.ac_claims(&c);
    claims["client_id"] = json!(OTHER_CLIENT);
    assert_eq!(
        e.get(&format!("{P}/accounts"), &e.sign(&claims))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Another customer's token naming this consent.
    let mut claims = e.ac_claims(&c);
    claims["sub"] = json!("someone-else");
    assert_eq!(
        e.get(&format!("{P}/accounts"), &e.sign(&claims))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // A revoked access token (the AS's revocation list).
    let mut claims = e.ac_claims(&c);
    claims["jti"] = json!("revoked-jti");
    let t = e.sign(&claims);
    assert_eq!(
        e.get(&format!("{P}/accounts"), &t).await.status,
        StatusCode::OK
    );
    e.store
        .revoke_access_token("revoked-jti", e.now().unix_timestamp() + 600)
        .await
        .unwrap();
    assert_eq!(
        e.get(&format!("{P}/accounts"), &t).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn consent_view_mapping() {
    use resource_server::store::consent_view;
    let now = START;
    let req = openbanking::parse_intent_body(
        &json!({"Data": {"Permissions": ["ReadBalances"],
            "TransactionFromDateTime": "2026-01-01T00:00:00Z"}, "Risk": {}}),
        now,
    )
    .unwrap();
    let mut d = AccountAccessDetails::new(Source::Intent, &req, now);
    d.expiration_date_time = Some(now + time::Duration::days(2));
    d.account_ids = Some(vec!["a1".into(), "a2".into()]);
    let mut rec = ConsentRecord {
        id: "c".into(),
        client_id: CLIENT.into(),
        customer_id: Some(ALICE_SUB.into()),
        kind: KIND_ACCOUNT_ACCESS.into(),
        scopes: "accounts".into(),
        status: Stored::Authorised,
        details: d.to_value(),
        created_at: 0,
        updated_at: 0,
        expires_at: Some((now + time::Duration::days(1)).unix_timestamp()),
    };
    let v = consent_view(&rec).unwrap();
    assert_eq!(v.status, ConsentStatus::Authorised);
    assert_eq!(v.subject.as_deref(), Some(ALICE_SUB));
    assert_eq!(
        v.permissions,
        [Permission::ReadBalances].into_iter().collect()
    );
    assert_eq!(
        v.account_ids,
        Some(["a1".to_owned(), "a2".to_owned()].into_iter().collect())
    );
    // The earlier of the record's and the details' expiry.
    assert_eq!(v.expires_at, Some(now + time::Duration::days(1)));
    assert_eq!(v.transaction_from, Some(datetime!(2026-01-01 0:00 UTC)));
    rec.status = Stored::Consumed;
    assert_ne!(
        consent_view(&rec).unwrap().status,
        ConsentStatus::Authorised
    );
    rec.status = Stored::Revoked;
    assert_eq!(consent_view(&rec).unwrap().status, ConsentStatus::Revoked);
    rec.details = json!({"not": "details"});
    assert!(consent_view(&rec).is_err(), "corrupt details fail closed");
    rec.kind = "oauth".into();
    let v = consent_view(&rec).unwrap();
    assert!(v.permissions.is_empty());
    assert_eq!(v.account_ids, Some(Default::default()));
}

// ---- expiry and races ------------------------------------------------------------------------

#[tokio::test]
async fn expiry_is_recorded_when_the_consent_is_read() {
    let e = env().await;
    let exp = e.now() + time::Duration::hours(1);
    let r = e
        .post_consent(
            &e.cc(CLIENT),
            json!({"Data": {"Permissions": ["ReadBalances"], "ExpirationDateTime": rfc3339(exp)}, "Risk": {}}),
        )
        .await;
    let id = r.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    e.authorise(&id, Some(vec![e.alice[0].id.clone()])).await;
    assert_eq!(
        e.get_consent(&e.cc(CLIENT), &id).await.body["Data"]["Status"],
        "AUTH"
    );
    e.advance(time::Duration::hours(2));
    // The customer's token (fresh, so only the consent is expired) is refused.
    assert_eq!(
        e.get(&format!("{P}/balances"), &e.ac(&id)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let g = e.get_consent(&e.cc(CLIENT), &id).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["Data"]["Status"], "EXPD");
    assert_eq!(
        g.body["Data"]["StatusReason"][0]["StatusReasonCode"],
        consents::REASON_EXPIRED
    );
    assert_eq!(g.body["Data"]["StatusUpdateDateTime"], rfc3339(e.now()));
    let rec = e.store.find_consent(&id).await.unwrap().unwrap();
    assert_eq!(rec.status, Stored::Expired, "persisted");
    let trail = e.store.list_audit(&id).await.unwrap();
    let last = trail.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("system", "expired")
    );
    // Reading again changes nothing more.
    e.get_consent(&e.cc(CLIENT), &id).await;
    assert_eq!(e.store.list_audit(&id).await.unwrap().len(), trail.len());
    // An expired consent cannot be deleted.
    let d = e.delete_consent(&e.cc(CLIENT), &id).await;
    assert_eq!(
        (d.status, error_code(&d.body)),
        (
            StatusCode::BAD_REQUEST,
            "UK.OBIE.Resource.InvalidConsentStatus"
        )
    );
    // Awaiting authorisation past expiry also expires; delete then sees EXPD.
    let id2 = e.create(&["ReadBalances"]).await;
    e.advance(time::Duration::days(31));
    let d = e.delete_consent(&e.cc(CLIENT), &id2).await;
    assert_eq!(d.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        e.store.find_consent(&id2).await.unwrap().unwrap().status,
        Stored::Expired
    );
}

#[tokio::test]
async fn racing_deletes_have_one_winner() {
    let e = env().await;
    let id = e.create(&["ReadBalances"]).await;
    e.authorise(&id, None).await;
    let (t1, t2) = (e.cc(CLIENT), e.cc(CLIENT));
    let (a, b) = tokio::join!(e.delete_consent(&t1, &id), e.delete_consent(&t2, &id));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::NO_CONTENT, StatusCode::BAD_REQUEST]);
    let revoked = e
        .store
        .list_audit(&id)
        .await
        .unwrap()
        .iter()
        .filter(|x| x.action == "revoked")
        .count();
    assert_eq!(revoked, 1);
}

// ---- DPoP replay across instances ------------------------------------------------------------

fn dpop_proof(holder: &SigningKey, at: &str, htm: &str, htu: &str, jti: &str, iat: i64) -> String {
    let mut h = serde_json::Map::new();
    h.insert("typ".into(), "dpop+jwt".into());
    h.insert(
        "jwk".into(),
        serde_json::to_value(holder.public_jwk()).unwrap(),
    );
    holder
        .sign_with_header(
            &h,
            &json!({"htm": htm, "htu": htu, "iat": iat, "jti": jti,
                "ath": fapi_jose::sha256_b64(at.as_bytes())}),
        )
        .unwrap()
}

async fn dpop_get(e: &Env, path: &str, at: &str, proof: Option<String>) -> Resp {
    let mut r = Request::get(path).header("authorization", format!("DPoP {at}"));
    if let Some(p) = proof {
        r = r.header("dpop", p);
    }
    e.send(r.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn dpop_proof_is_accepted_once_across_instances() {
    let a = env().await;
    let replay: Arc<dyn EphemeralStore> = Arc::new(a.store.ephemeral());
    let one = env_with(
        Some(&a),
        Opts {
            rate_limit: None,
            replay: Some(replay.clone()),
        },
    )
    .await;
    let two = env_with(
        Some(&a),
        Opts {
            rate_limit: None,
            replay: Some(replay.clone()),
        },
    )
    .await;
    let id = a.create(&["ReadBalances"]).await;
    let holder = SigningKey::generate(Alg::ES256, "tpp-dpop").unwrap();
    let jkt = holder.public_jwk().thumbprint_s256().unwrap();
    let mut c = a.cc_claims(CLIENT);
    c["cnf"] = json!({"jkt": jkt});
    let at = a.sign(&c);
    let path = format!("{P}/account-access-consents/{id}");
    let url = format!("{AUD}{path}");
    let now = a.now().unix_timestamp();
    let p1 = dpop_proof(&holder, &at, "GET", &url, "proof-1", now);
    let r = dpop_get(&one, &path, &at, Some(p1.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The same proof at the other instance.
    let r = dpop_get(&two, &path, &at, Some(p1.clone())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_dpop_proof")
    );
    assert!(
        replay
            .get(
                resource_server::jwt::DPOP_REPLAY_NS,
                &format!("{jkt}:proof-1"),
                now
            )
            .await
            .unwrap()
            .is_some()
    );
    // A fresh proof works at either.
    let p2 = dpop_proof(&holder, &at, "GET", &url, "proof-2", now);
    assert_eq!(
        dpop_get(&two, &path, &at, Some(p2)).await.status,
        StatusCode::OK
    );
    // A replay store that fails refuses the request (503), never accepts it.
    let broken = env_with(
        Some(&a),
        Opts {
            rate_limit: None,
            replay: Some(Arc::new(BrokenEphemeral)),
        },
    )
    .await;
    let p3 = dpop_proof(&holder, &at, "GET", &url, "proof-3", now);
    let r = dpop_get(&broken, &path, &at, Some(p3)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers.contains_key("retry-after"));
}

struct BrokenEphemeral;

#[async_trait::async_trait]
impl EphemeralStore for BrokenEphemeral {
    async fn put(&self, _: &str, _: &str, _: &str, _: i64, _: i64) -> StoreResult<()> {
        Err(StoreError::Cache("down".into()))
    }
    async fn get(&self, _: &str, _: &str, _: i64) -> StoreResult<Option<String>> {
        Err(StoreError::Cache("down".into()))
    }
    async fn take(&self, _: &str, _: &str, _: i64) -> StoreResult<Option<String>> {
        Err(StoreError::Cache("down".into()))
    }
    async fn delete(&self, _: &str, _: &str) -> StoreResult<()> {
        Err(StoreError::Cache("down".into()))
    }
    async fn insert_if_absent(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> StoreResult<bool> {
        Err(StoreError::Cache("down".into()))
    }
    async fn consume(&self, _: &str, _: &str, _: i64) -> StoreResult<authz_store::Consumed> {
        Err(StoreError::Cache("down".into()))
    }
    async fn ping(&self) -> StoreResult<()> {
        Err(StoreError::Cache("down".into()))
    }
}

// ---- the verified-token cache ----------------------------------------------------------------

#[tokio::test]
async fn verified_token_cache_does_not_bypass_any_other_check() {
    let e = env().await;
    let c = e
        .insert(
            KIND_ACCOUNT_ACCESS,
            Stored::Authorised,
            Some(vec![e.alice[0].id.clone()]),
            None,
        )
        .await;
    let path = format!("{P}/accounts");
    let t = e.ac(&c);
    // First use verifies the signature and caches the claims.
    assert_eq!(e.get(&path, &t).await.status, StatusCode::OK);
    assert_eq!(e.get(&path, &t).await.status, StatusCode::OK);
    // The cached token with another certificate, or none: refused.
    for cert in [Some(CERT_B), None] {
        let r = e.call("GET", &path, Some(&t), cert, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{cert:?}");
    }
    // A token differing in one signature character is not a cache hit.
    let mut forged = t.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(e.get(&path, &forged).await.status, StatusCode::UNAUTHORIZED);
    // Consent revoked after a cached success: refused.
    e.store
        .transition_consent(
            &c,
            &[Stored::Authorised],
            Stored::Revoked,
            &audit(&c, e.now(), "customer:alice", "revoked"),
        )
        .await
        .unwrap();
    assert_eq!(e.get(&path, &t).await.status, StatusCode::UNAUTHORIZED);
    // Expiry is checked against now on a hit.
    let c2 = e
        .insert(KIND_ACCOUNT_ACCESS, Stored::Authorised, None, None)
        .await;
    let t2 = e.ac(&c2);
    assert_eq!(e.get(&path, &t2).await.status, StatusCode::OK);
    e.advance(time::Duration::seconds(301));
    let r = e.get(&path, &t2).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("expired")
    );
    // A key withdrawn from the JWKS stops cached tokens at once.
    let t3 = e.ac(&c2);
    assert_eq!(e.get(&path, &t3).await.status, StatusCode::OK);
    let other = SigningKey::generate(Alg::ES256, "as-key-2").unwrap();
    e.verifier.set_keys(vec![other.public_jwk()]);
    assert_eq!(e.get(&path, &t3).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn verified_token_cache_keeps_dpop_checks() {
    let e = env().await;
    let id = e.create(&["ReadBalances"]).await;
    let holder = SigningKey::generate(Alg::ES256, "tpp-dpop").unwrap();
    let mut c = e.cc_claims(CLIENT);
    c["cnf"] = json!({"jkt": holder.public_jwk().thumbprint_s256().unwrap()});
    let at = e.sign(&c);
    let path = format!("{P}/account-access-consents/{id}");
    let url = format!("{AUD}{path}");
    let now = e.now().unix_timestamp();
    let p1 = dpop_proof(&holder, &at, "GET", &url, "p1", now);
    assert_eq!(
        dpop_get(&e, &path, &at, Some(p1.clone())).await.status,
        StatusCode::OK
    );
    // Cached token: no proof, a replayed proof, a proof from another key — refused.
    assert_eq!(
        dpop_get(&e, &path, &at, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        dpop_get(&e, &path, &at, Some(p1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let thief = SigningKey::generate(Alg::ES256, "thief").unwrap();
    let p = dpop_proof(&thief, &at, "GET", &url, "p2", now);
    assert_eq!(
        dpop_get(&e, &path, &at, Some(p)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let p = dpop_proof(&holder, &at, "DELETE", &url, "p3", now);
    assert_eq!(
        dpop_get(&e, &path, &at, Some(p)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

// ---- caching of revocation answers -----------------------------------------------------------

#[derive(Default)]
struct CountingSource {
    revoked: Mutex<bool>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl ConsentSource for CountingSource {
    async fn consent(&self, _: &str) -> anyhow::Result<Option<ConsentView>> {
        Ok(None)
    }
    async fn is_token_revoked(&self, _: &str) -> anyhow::Result<bool> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(*self.revoked.lock().unwrap())
    }
}

#[tokio::test]
async fn cached_source_caches_token_revocation_for_at_most_a_second() {
    let inner = Arc::new(CountingSource::default());
    let cached = CachedConsentSource::new(inner.clone(), std::time::Duration::from_secs(10));
    for _ in 0..5 {
        assert!(!cached.is_token_revoked("j").await.unwrap());
    }
    assert_eq!(
        inner.calls.load(Ordering::Relaxed),
        1,
        "one lookup per second"
    );
    *inner.revoked.lock().unwrap() = true;
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    assert!(
        cached.is_token_revoked("j").await.unwrap(),
        "seen within 1 s"
    );
}

// ---- throttling --------------------------------------------------------------------------------

#[tokio::test]
async fn clients_are_throttled_with_retry_after() {
    let base = env().await;
    let e = env_with(
        Some(&base),
        Opts {
            rate_limit: Some(RateLimit {
                per_second: 1,
                burst: 2,
            }),
            replay: None,
        },
    )
    .await;
    let id = base.create(&["ReadBalances"]).await;
    let t = e.cc(CLIENT);
    for _ in 0..2 {
        assert_eq!(e.get_consent(&t, &id).await.status, StatusCode::OK);
    }
    let r = e.get_consent(&t, &id).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&secs));
    assert_eq!(r.body["Code"], "429 TooManyRequests");
    assert!(r.headers.contains_key("x-fapi-interaction-id"));
    // Keyed by client: another client is not affected.
    assert_eq!(
        e.get_consent(&e.cc(OTHER_CLIENT), "aac-x").await.status,
        StatusCode::BAD_REQUEST
    );
    // The account APIs are throttled too.
    e.authorise(&id, None).await;
    let r = e.get(&format!("{P}/accounts"), &e.ac(&id)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // And the allowance comes back.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(e.get_consent(&t, &id).await.status, StatusCode::OK);
}

/// The sandbox's incoming-transfer tool does not exist outside sandbox deployments
/// (`AppState::sandbox` is off unless the platform runs in sandbox mode): a valid
/// client-credentials call answers 404 and moves nothing.
#[tokio::test]
async fn incoming_transfers_answer_404_outside_the_sandbox() {
    let e = env().await;
    let body = json!({"Data": {
        "AccountId": e.alice[0].id,
        "InstructedAmount": {"Amount": "5.00", "Currency": "KES"},
        "Debtor": {"Name": "Gus"}
    }});
    let r = e
        .call(
            "POST",
            "/open-banking/v4.0/sandbox/incoming-transfers",
            Some(&e.cc(CLIENT)),
            Some(CERT_A),
            Some(("application/json", body.to_string())),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    assert_eq!(error_code(&r.body), "UK.OBIE.NotFound");
}
