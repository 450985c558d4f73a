//! The account information API driven in-process (`oneshot`) with real JWT access tokens
//! (minted here with `fapi_jose::SigningKey`), the production `JwtVerifier`, an in-memory
//! consent source and the generated sandbox bank. Every enforcement rule has a negative
//! test that fails if the rule is removed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use core_bank::{GeneratorConfig, SandboxBank, generate};
use fapi_jose::{Alg, SigningKey};
use resource_server::jwt::Clock;
use resource_server::*;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use time::macros::{date, datetime};
use tower::ServiceExt;

const ISS: &str = "https://localhost:8443";
const AUD: &str = "https://localhost:8445";
const CLIENT: &str = "tpp-1";
const ALICE_SUB: &str = "9b1c0d7e-alice";
const CERT_A: &[u8] = b"tpp certificate A (DER stand-in)";
const CERT_B: &[u8] = b"tpp certificate B (DER stand-in)";
const NOW: OffsetDateTime = datetime!(2026-11-20 10:00 +3);
const P: &str = "/open-banking/v4.0/aisp";

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        NOW
    }
}

#[derive(Default)]
struct MemConsents {
    consents: Mutex<HashMap<String, ConsentView>>,
    revoked_jtis: Mutex<BTreeSet<String>>,
}

#[async_trait::async_trait]
impl ConsentSource for MemConsents {
    async fn consent(&self, id: &str) -> anyhow::Result<Option<ConsentView>> {
        Ok(self.consents.lock().unwrap().get(id).cloned())
    }
    async fn is_token_revoked(&self, jti: &str) -> anyhow::Result<bool> {
        Ok(self.revoked_jtis.lock().unwrap().contains(jti))
    }
}

struct World {
    app: Router,
    key: SigningKey,
    consents: Arc<MemConsents>,
    bank: Arc<SandboxBank>,
    alice: Vec<core_bank::Account>,
    bob: Vec<core_bank::Account>,
    n: Mutex<u32>,
}

async fn world() -> World {
    world_with_page(100).await
}

async fn world_with_page(page_size: usize) -> World {
    let bank = Arc::new(SandboxBank::new(
        generate(&GeneratorConfig::sandbox(date!(2026 - 11 - 20))).unwrap(),
    ));
    let (alice, bob) = bank.read(|b| {
        let a = b.customer_by_username("alice").unwrap().id.clone();
        let o = b.customer_by_username("bob").unwrap().id.clone();
        (b.accounts_of(&a), b.accounts_of(&o))
    });
    bank.link_customer(ALICE_SUB, &alice[0].customer_id)
        .unwrap();
    let key = SigningKey::generate(Alg::ES256, "as-key-1").unwrap();
    let consents = Arc::new(MemConsents::default());
    let verifier = JwtVerifier::new(
        JwtVerifierConfig::new(ISS, AUD),
        vec![key.public_jwk()],
        consents.clone(),
        Arc::new(FixedClock),
    );
    let store = authz_store::SqlStore::connect("sqlite::memory:", None)
        .await
        .unwrap();
    let mut state = AppState::new(
        bank.clone(),
        Arc::new(verifier),
        Arc::new(store),
        Arc::new(FixedClock),
        AUD,
    );
    state.page_size = page_size;
    World {
        app: router(state),
        key,
        consents,
        bank,
        alice,
        bob,
        n: Mutex::new(0),
    }
}

fn all_permissions() -> BTreeSet<Permission> {
    Permission::ALL.into_iter().collect()
}

impl World {
    /// Registers an authorised consent and returns its id.
    fn consent(
        &self,
        permissions: BTreeSet<Permission>,
        accounts: Option<&[&str]>,
        window: (Option<OffsetDateTime>, Option<OffsetDateTime>),
    ) -> String {
        let mut n = self.n.lock().unwrap();
        *n += 1;
        let id = format!("aac-{n}");
        self.consents.consents.lock().unwrap().insert(
            id.clone(),
            ConsentView {
                consent_id: id.clone(),
                status: ConsentStatus::Authorised,
                client_id: CLIENT.into(),
                subject: Some(ALICE_SUB.into()),
                permissions,
                account_ids: accounts.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
                expires_at: Some(NOW + time::Duration::days(90)),
                transaction_from: window.0,
                transaction_to: window.1,
            },
        );
        id
    }

    fn claims(&self, consent: &str) -> Value {
        json!({
            "iss": ISS, "sub": ALICE_SUB, "aud": AUD, "client_id": CLIENT,
            "iat": NOW.unix_timestamp() - 10, "exp": NOW.unix_timestamp() + 300,
            "jti": format!("jti-{consent}"), "scope": "openid accounts",
            "cnf": {"x5t#S256": fapi_jose::x5t_s256(CERT_A)}, "consent_id": consent,
        })
    }

    fn token(&self, consent: &str) -> String {
        self.sign(&self.claims(consent))
    }

    fn sign(&self, claims: &Value) -> String {
        self.key.sign_jwt(Some("at+jwt"), claims).unwrap()
    }

    /// A token for a consent with every permission over every account of alice.
    fn full_token(&self) -> String {
        let c = self.consent(all_permissions(), None, (None, None));
        self.token(&c)
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn get_with(
        &self,
        path: &str,
        token: &str,
        cert: Option<&[u8]>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        if let Some(c) = cert {
            req.extensions_mut().insert(PeerCertificate(Arc::from(c)));
        }
        self.call(req).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
        self.get_with(path, token, Some(CERT_A)).await
    }
}

fn perms(ps: &[Permission]) -> BTreeSet<Permission> {
    ps.iter().copied().collect()
}

fn error_code(body: &Value) -> &str {
    body["Errors"][0]["ErrorCode"].as_str().unwrap_or("")
}

fn all_transactions(body: &Value) -> &Vec<Value> {
    body["Data"]["Transaction"].as_array().unwrap()
}

// ---- happy paths and shapes --------------------------------------------------------------

#[tokio::test]
async fn accounts_lists_exactly_the_selected_accounts() {
    let w = world().await;
    let picked = [w.alice[0].id.as_str(), w.alice[2].id.as_str()];
    let c = w.consent(all_permissions(), Some(&picked), (None, None));
    let (s, h, b) = w.get(&format!("{P}/accounts"), &w.token(&c)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ids: Vec<&str> = b["Data"]["Account"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AccountId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, picked);
    assert_eq!(b["Links"]["Self"], format!("{AUD}{P}/accounts"));
    assert_eq!(b["Meta"]["TotalPages"], 1);
    assert!(h.contains_key("x-fapi-interaction-id"));
    // Every account of alice when the consent names none.
    let (_, _, b) = w.get(&format!("{P}/accounts"), &w.full_token()).await;
    assert_eq!(
        b["Data"]["Account"].as_array().unwrap().len(),
        w.alice.len()
    );
}

#[tokio::test]
async fn balances_are_booked_and_available_from_the_ledger() {
    let w = world().await;
    let card = w
        .alice
        .iter()
        .find(|a| a.kind == core_bank::AccountKind::CreditCard)
        .unwrap();
    let (s, _, b) = w
        .get(
            &format!("{P}/accounts/{}/balances", card.id),
            &w.full_token(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let core = w.bank.read(|bk| bk.balances(&card.id).unwrap());
    let bal = b["Data"]["Balance"].as_array().unwrap();
    assert_eq!(bal[0]["Type"], "ITBD");
    assert_eq!(bal[0]["Amount"]["Amount"], core.booked.abs_decimal());
    assert_eq!(bal[1]["Type"], "ITAV");
    assert_eq!(bal[1]["Amount"]["Amount"], core.available.abs_decimal());
    assert_eq!(bal[1]["CreditLine"][0]["Type"], "Credit");
    assert_eq!(bal[1]["CreditLine"][0]["Amount"]["Amount"], "300000.00");
    let (s, _, b) = w.get(&format!("{P}/balances"), &w.full_token()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b["Data"]["Balance"].as_array().unwrap().len(),
        2 * w.alice.len()
    );
}

#[tokio::test]
async fn beneficiaries_standing_orders_and_parties_are_served() {
    let w = world().await;
    let t = w.full_token();
    let cur = &w.alice[0].id;
    let (s, _, b) = w
        .get(&format!("{P}/accounts/{cur}/beneficiaries"), &t)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["Data"]["Beneficiary"][0]["CreditorAccount"]["Identification"].is_string());
    let (s, _, b) = w
        .get(&format!("{P}/accounts/{cur}/standing-orders"), &t)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b["Data"]["StandingOrder"][0]["NextPaymentAmount"]["Amount"],
        "45000.00"
    );
    let (s, _, b) = w.get(&format!("{P}/party"), &t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["Data"]["Party"]["Name"], "Alice Wanjiru Kamau");
    let (s, _, b) = w.get(&format!("{P}/accounts/{cur}/parties"), &t).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["Data"]["Party"][0]["AccountRole"], "UK.OBIE.Owner");
}

// ---- selected accounts ---------------------------------------------------------------------

#[tokio::test]
async fn accounts_outside_the_consent_are_refused() {
    let w = world().await;
    let c = w.consent(
        all_permissions(),
        Some(&[w.alice[0].id.as_str(), "acc-closed-since"]),
        (None, None),
    );
    let t = w.token(&c);
    for sub in [
        "",
        "/balances",
        "/transactions",
        "/beneficiaries",
        "/standing-orders",
        "/parties",
    ] {
        // Another customer's account.
        let (s, _, b) = w
            .get(&format!("{P}/accounts/{}{sub}", w.bob[0].id), &t)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "bob {sub}: {b}");
        assert_eq!(error_code(&b), "UK.OBIE.Resource.ConsentMismatch");
        // Alice's own account that she did not select.
        let (s, _, _) = w
            .get(&format!("{P}/accounts/{}{sub}", w.alice[1].id), &t)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "unselected {sub}");
        // An id nobody holds: same answer, so the API is no oracle for account ids.
        let (s, _, _) = w
            .get(&format!("{P}/accounts/acc-nonexistent{sub}"), &t)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "unknown {sub}");
        // An id the consent names that the bank no longer holds: 400 NotFound.
        let (s, _, b) = w
            .get(&format!("{P}/accounts/acc-closed-since{sub}"), &t)
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "closed {sub}");
        assert_eq!(error_code(&b), "UK.OBIE.Resource.NotFound");
        // And the selected one works.
        let (s, _, _) = w
            .get(&format!("{P}/accounts/{}{sub}", w.alice[0].id), &t)
            .await;
        assert_eq!(s, StatusCode::OK, "selected {sub}");
    }
    // Bulk endpoints only cover the selected account.
    let (_, _, b) = w.get(&format!("{P}/balances"), &t).await;
    assert!(
        b["Data"]["Balance"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["AccountId"] == w.alice[0].id.as_str())
    );
    let (_, _, b) = w.get(&format!("{P}/transactions"), &t).await;
    assert!(
        all_transactions(&b)
            .iter()
            .all(|x| x["AccountId"] == w.alice[0].id.as_str())
    );
}

// ---- permissions ----------------------------------------------------------------------------

#[tokio::test]
async fn every_endpoint_needs_its_permission() {
    use Permission::*;
    let w = world().await;
    let a = &w.alice[0].id;
    let cases: Vec<(String, Vec<Permission>)> = vec![
        (
            format!("{P}/accounts"),
            vec![ReadAccountsBasic, ReadAccountsDetail],
        ),
        (
            format!("{P}/accounts/{a}"),
            vec![ReadAccountsBasic, ReadAccountsDetail],
        ),
        (format!("{P}/accounts/{a}/balances"), vec![ReadBalances]),
        (format!("{P}/balances"), vec![ReadBalances]),
        (
            format!("{P}/accounts/{a}/transactions"),
            vec![ReadTransactionsBasic, ReadTransactionsDetail],
        ),
        (
            format!("{P}/transactions"),
            vec![ReadTransactionsBasic, ReadTransactionsDetail],
        ),
        (
            format!("{P}/transactions"),
            vec![ReadTransactionsCredits, ReadTransactionsDebits],
        ),
        (
            format!("{P}/accounts/{a}/beneficiaries"),
            vec![ReadBeneficiariesBasic, ReadBeneficiariesDetail],
        ),
        (
            format!("{P}/accounts/{a}/standing-orders"),
            vec![ReadStandingOrdersBasic, ReadStandingOrdersDetail],
        ),
        (format!("{P}/party"), vec![ReadPartyPSU]),
        (format!("{P}/accounts/{a}/parties"), vec![ReadParty]),
    ];
    for (path, needed) in cases {
        let mut ps = all_permissions();
        for p in &needed {
            ps.remove(p);
        }
        let c = w.consent(ps, None, (None, None));
        let (s, h, b) = w.get(&path, &w.token(&c)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path} without {needed:?}: {b}");
        assert_eq!(error_code(&b), "UK.OBIE.Resource.ConsentMismatch");
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        // Any one of the alternatives is enough.
        for p in &needed {
            let mut ps = all_permissions();
            for q in &needed {
                if q != p {
                    ps.remove(q);
                }
            }
            let c = w.consent(ps, None, (None, None));
            let (s, _, b) = w.get(&path, &w.token(&c)).await;
            assert_eq!(s, StatusCode::OK, "{path} with {p:?}: {b}");
        }
    }
}

#[tokio::test]
async fn accounts_detail_adds_identification() {
    use Permission::*;
    let w = world().await;
    let basic = w.consent(perms(&[ReadAccountsBasic]), None, (None, None));
    let detail = w.consent(perms(&[ReadAccountsDetail]), None, (None, None));
    let (_, _, b) = w
        .get(&format!("{P}/accounts/{}", w.alice[0].id), &w.token(&basic))
        .await;
    let acc = &b["Data"]["Account"][0];
    assert!(
        acc.get("Account").is_none() && acc.get("Servicer").is_none(),
        "{acc}"
    );
    assert_eq!(acc["AccountTypeCode"], "CACC");
    let (_, _, b) = w
        .get(
            &format!("{P}/accounts/{}", w.alice[0].id),
            &w.token(&detail),
        )
        .await;
    let acc = &b["Data"]["Account"][0];
    assert_eq!(acc["Account"][0]["SchemeName"], "KE.WEKEZA.AccountNumber");
    assert_eq!(acc["Servicer"]["Identification"], "WKZAKENA");
}

#[tokio::test]
async fn transactions_basic_hides_counterparty_and_merchant_detail() {
    use Permission::*;
    let w = world().await;
    let card = w
        .alice
        .iter()
        .find(|a| a.kind == core_bank::AccountKind::CreditCard)
        .unwrap();
    let basic = w.consent(
        perms(&[
            ReadTransactionsBasic,
            ReadTransactionsDebits,
            ReadTransactionsCredits,
        ]),
        None,
        (None, None),
    );
    let detail = w.consent(
        perms(&[
            ReadTransactionsDetail,
            ReadTransactionsDebits,
            ReadTransactionsCredits,
        ]),
        None,
        (None, None),
    );
    let path = format!("{P}/accounts/{}/transactions", card.id);
    let (_, _, b) = w.get(&path, &w.token(&basic)).await;
    for t in all_transactions(&b) {
        for f in [
            "MerchantDetails",
            "TransactionInformation",
            "Balance",
            "CreditorAccount",
            "DebtorAccount",
        ] {
            assert!(t.get(f).is_none(), "Basic leaked {f}: {t}");
        }
    }
    let (_, _, b) = w.get(&path, &w.token(&detail)).await;
    let txs = all_transactions(&b);
    assert!(
        txs.iter()
            .any(|t| t["MerchantDetails"]["MerchantCategoryCode"].is_string())
    );
    assert!(
        txs.iter()
            .all(|t| t["Balance"]["Amount"]["Amount"].is_string())
    );
    let (_, _, b) = w
        .get(
            &format!("{P}/accounts/{}/transactions", w.alice[0].id),
            &w.token(&detail),
        )
        .await;
    assert!(
        all_transactions(&b)
            .iter()
            .any(|t| t["CreditorAccount"]["SchemeName"] == "KE.MPESA.MSISDN")
    );
}

#[tokio::test]
async fn beneficiaries_and_standing_orders_basic_hide_the_creditor_account() {
    use Permission::*;
    let w = world().await;
    let a = &w.alice[0].id;
    let basic = w.consent(
        perms(&[ReadBeneficiariesBasic, ReadStandingOrdersBasic]),
        None,
        (None, None),
    );
    let (_, _, b) = w
        .get(&format!("{P}/accounts/{a}/beneficiaries"), &w.token(&basic))
        .await;
    assert!(
        b["Data"]["Beneficiary"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x.get("CreditorAccount").is_none())
    );
    let (_, _, b) = w
        .get(
            &format!("{P}/accounts/{a}/standing-orders"),
            &w.token(&basic),
        )
        .await;
    assert!(
        b["Data"]["StandingOrder"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x.get("CreditorAccount").is_none())
    );
}

#[tokio::test]
async fn credits_only_and_debits_only_filter_direction() {
    use Permission::*;
    let w = world().await;
    for (p, want) in [
        (ReadTransactionsCredits, "Credit"),
        (ReadTransactionsDebits, "Debit"),
    ] {
        let c = w.consent(perms(&[ReadTransactionsDetail, p]), None, (None, None));
        let (s, _, b) = w
            .get(
                &format!("{P}/accounts/{}/transactions", w.alice[0].id),
                &w.token(&c),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let txs = all_transactions(&b);
        assert!(!txs.is_empty());
        assert!(
            txs.iter().all(|t| t["CreditDebitIndicator"] == want),
            "{p:?}"
        );
    }
    // Both: both directions appear.
    let c = w.consent(
        perms(&[
            ReadTransactionsDetail,
            ReadTransactionsCredits,
            ReadTransactionsDebits,
        ]),
        None,
        (None, None),
    );
    let (_, _, b) = w
        .get(
            &format!("{P}/accounts/{}/transactions", w.alice[0].id),
            &w.token(&c),
        )
        .await;
    let dirs: BTreeSet<&str> = all_transactions(&b)
        .iter()
        .map(|t| t["CreditDebitIndicator"].as_str().unwrap())
        .collect();
    assert_eq!(dirs.len(), 2);
}

// ---- transaction window and pagination -----------------------------------------------------

#[tokio::test]
async fn transactions_outside_the_consent_window_are_excluded() {
    let w = world_with_page(1000).await;
    let from = datetime!(2026-06-01 00:00 +3);
    let to = datetime!(2026-06-30 23:59:59 +3);
    let c = w.consent(all_permissions(), None, (Some(from), Some(to)));
    let t = w.token(&c);
    let in_window = |b: &Value| {
        all_transactions(b).iter().all(|x| {
            let d = OffsetDateTime::parse(
                x["BookingDateTime"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            d >= from && d <= to
        })
    };
    let (s, _, b) = w.get(&format!("{P}/transactions"), &t).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!all_transactions(&b).is_empty() && in_window(&b));
    // Asking for more than the consent allows still stays inside the window.
    let (_, _, b) = w.get(&format!("{P}/transactions?fromBookingDateTime=2025-01-01T00:00:00&toBookingDateTime=2026-12-31T00:00:00"), &t).await;
    assert!(!all_transactions(&b).is_empty() && in_window(&b));
    // A request entirely outside the window: 200 with no transactions.
    let (s, _, b) = w
        .get(
            &format!(
                "{P}/accounts/{}/transactions?fromBookingDateTime=2026-08-01",
                w.alice[0].id
            ),
            &t,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(all_transactions(&b).is_empty());
    // Without a consent window the same query returns data (so the window did the filtering).
    let (_, _, b) = w
        .get(
            &format!(
                "{P}/accounts/{}/transactions?fromBookingDateTime=2026-08-01",
                w.alice[0].id
            ),
            &w.full_token(),
        )
        .await;
    assert!(!all_transactions(&b).is_empty());
    // A malformed date is a 400.
    let (s, _, b) = w
        .get(
            &format!("{P}/transactions?fromBookingDateTime=yesterday"),
            &t,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&b), "UK.OBIE.Field.InvalidDate");
}

#[tokio::test]
async fn transaction_pages_follow_links_without_gaps_or_repeats() {
    let w = world_with_page(50).await;
    let t = w.full_token();
    let q = "fromBookingDateTime=2026-05-01T00:00:00&toBookingDateTime=2026-07-31T23:59:59";
    let mut next = Some(format!("{P}/transactions?{q}"));
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut total_pages = 0;
    while let Some(url) = next {
        let (s, _, b) = w.get(url.trim_start_matches(AUD), &t).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        total_pages = b["Meta"]["TotalPages"].as_u64().unwrap();
        assert!(b["Meta"]["FirstAvailableDateTime"].is_string());
        assert!(all_transactions(&b).len() <= 50);
        seen.extend(
            all_transactions(&b)
                .iter()
                .map(|x| x["TransactionId"].as_str().unwrap().to_owned()),
        );
        next = b["Links"]["Next"].as_str().map(str::to_owned);
        assert!(b["Links"]["First"].as_str().unwrap().contains("page=1"));
        pages += 1;
        assert!(pages < 100);
    }
    assert_eq!(pages, total_pages);
    assert!(pages > 2);
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    // The union equals one big page.
    let w2 = world_with_page(1000).await;
    let (_, _, b) = w2
        .get(&format!("{P}/transactions?{q}"), &w2.full_token())
        .await;
    assert_eq!(all_transactions(&b).len(), seen.len());
    let (s, _, _) = w.get(&format!("{P}/transactions?page=0"), &t).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

// ---- tokens ---------------------------------------------------------------------------------

#[tokio::test]
async fn token_bound_to_another_certificate_is_refused() {
    let w = world().await;
    let t = w.full_token();
    let path = format!("{P}/accounts");
    let (s, h, b) = w.get_with(&path, &t, Some(CERT_B)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let (s, _, _) = w.get_with(&path, &t, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = w.get_with(&path, &t, Some(CERT_A)).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn invalid_tokens_are_refused() {
    let w = world().await;
    let c = w.consent(all_permissions(), None, (None, None));
    let path = format!("{P}/accounts");
    let base = w.claims(&c);
    let with = |k: &str, v: Value| {
        let mut x = base.clone();
        x[k] = v;
        w.sign(&x)
    };
    let other_key = SigningKey::generate(Alg::ES256, "as-key-1").unwrap();
    let cases: Vec<(&str, String, StatusCode)> = vec![
        (
            "expired",
            with("exp", json!(NOW.unix_timestamp() - 1)),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong audience",
            with("aud", json!("https://elsewhere.example")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong issuer",
            with("iss", json!("https://evil.example")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unbound",
            {
                let mut x = base.clone();
                x.as_object_mut().unwrap().remove("cnf");
                w.sign(&x)
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong typ",
            w.key.sign_jwt(Some("JWT"), &base).unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "foreign key",
            other_key.sign_jwt(Some("at+jwt"), &base).unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "other client",
            with("client_id", json!("tpp-2")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no accounts scope",
            with("scope", json!("openid payments")),
            StatusCode::FORBIDDEN,
        ),
        ("garbage", "not.a.jwt".to_owned(), StatusCode::UNAUTHORIZED),
    ];
    for (name, token, want) in cases {
        let (s, h, b) = w.get(&path, &token).await;
        assert_eq!(s, want, "{name}: {b}");
        assert!(h.contains_key("www-authenticate"), "{name}");
        assert!(
            b["Errors"][0]["ErrorCode"]
                .as_str()
                .unwrap()
                .starts_with("UK.OBIE."),
            "{name}"
        );
    }
    // Expired grant: one second before exp still works.
    let (s, _, _) = w
        .get(&path, &with("exp", json!(NOW.unix_timestamp() + 1)))
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn tokens_only_from_the_authorization_header() {
    let w = world().await;
    let t = w.full_token();
    // In the query only.
    let req = Request::get(format!("{P}/accounts?access_token={t}"))
        .body(Body::empty())
        .unwrap();
    let (s, _, b) = w.call(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(error_code(&b), "UK.OBIE.Field.Unexpected");
    // In the query as well as the header: still refused.
    let (s, _, _) = w.get(&format!("{P}/accounts?access_token={t}"), &t).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // No header at all.
    let req = Request::get(format!("{P}/accounts"))
        .body(Body::empty())
        .unwrap();
    let (s, h, b) = w.call(req).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&b), "UK.OBIE.Header.Missing");
    assert!(h.contains_key("www-authenticate"));
    // The scheme is case-insensitive.
    let mut req = Request::get(format!("{P}/accounts"))
        .header("authorization", format!("bEARER {t}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(PeerCertificate(Arc::from(CERT_A)));
    assert_eq!(w.call(req).await.0, StatusCode::OK);
}

#[tokio::test]
async fn revoked_or_expired_consents_and_revoked_tokens_are_refused() {
    let w = world().await;
    let c = w.consent(all_permissions(), None, (None, None));
    let t = w.token(&c);
    let path = format!("{P}/accounts");
    assert_eq!(w.get(&path, &t).await.0, StatusCode::OK);
    w.consents
        .consents
        .lock()
        .unwrap()
        .get_mut(&c)
        .unwrap()
        .status = ConsentStatus::Revoked;
    let (s, _, b) = w.get(&path, &t).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&b), "UK.OBIE.Resource.InvalidConsentStatus");
    // Expired by date while still marked authorised.
    let c2 = w.consent(all_permissions(), None, (None, None));
    w.consents
        .consents
        .lock()
        .unwrap()
        .get_mut(&c2)
        .unwrap()
        .expires_at = Some(NOW - time::Duration::seconds(1));
    assert_eq!(
        w.get(&path, &w.token(&c2)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Unknown consent.
    assert_eq!(
        w.get(&path, &w.token("aac-unknown")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A single revoked token (by jti) while its consent stays valid.
    let c3 = w.consent(all_permissions(), None, (None, None));
    w.consents
        .revoked_jtis
        .lock()
        .unwrap()
        .insert(format!("jti-{c3}"));
    assert_eq!(
        w.get(&path, &w.token(&c3)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn cached_consent_source_sees_revocation_within_a_second() {
    let inner = Arc::new(MemConsents::default());
    let view = ConsentView {
        consent_id: "c".into(),
        status: ConsentStatus::Authorised,
        client_id: CLIENT.into(),
        subject: None,
        permissions: all_permissions(),
        account_ids: None,
        expires_at: None,
        transaction_from: None,
        transaction_to: None,
    };
    inner.consents.lock().unwrap().insert("c".into(), view);
    // Asking for a 5 s TTL still caches for at most 1 s.
    let cached = CachedConsentSource::new(inner.clone(), std::time::Duration::from_secs(5));
    assert_eq!(
        cached.consent("c").await.unwrap().unwrap().status,
        ConsentStatus::Authorised
    );
    inner.consents.lock().unwrap().get_mut("c").unwrap().status = ConsentStatus::Revoked;
    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    assert_eq!(
        cached.consent("c").await.unwrap().unwrap().status,
        ConsentStatus::Revoked
    );
    // Explicit invalidation (the pub/sub path) is immediate.
    inner.consents.lock().unwrap().get_mut("c").unwrap().status = ConsentStatus::Authorised;
    cached.invalidate("c");
    assert_eq!(
        cached.consent("c").await.unwrap().unwrap().status,
        ConsentStatus::Authorised
    );
}

// ---- DPoP-bound tokens ----------------------------------------------------------------------

#[tokio::test]
async fn dpop_bound_tokens_need_a_matching_fresh_proof() {
    let w = world().await;
    let c = w.consent(all_permissions(), None, (None, None));
    let holder = SigningKey::generate(Alg::ES256, "tpp-dpop").unwrap();
    let jkt = holder.public_jwk().thumbprint_s256().unwrap();
    let mut claims = w.claims(&c);
    claims["cnf"] = json!({"jkt": jkt});
    let at = w.sign(&claims);
    let path = format!("{P}/accounts");
    let proof = |htm: &str, htu: &str, jti: &str, iat: i64| {
        let mut h = serde_json::Map::new();
        h.insert("typ".into(), "dpop+jwt".into());
        h.insert(
            "jwk".into(),
            serde_json::to_value(holder.public_jwk()).unwrap(),
        );
        holder
            .sign_with_header(&h, &json!({"htm": htm, "htu": htu, "iat": iat, "jti": jti, "ath": fapi_jose::sha256_b64(at.as_bytes())}))
            .unwrap()
    };
    let send = |scheme: &'static str, proof: Option<String>| {
        let mut r = Request::get(&path).header("authorization", format!("{scheme} {at}"));
        if let Some(p) = proof {
            r = r.header("dpop", p);
        }
        r.body(Body::empty()).unwrap()
    };
    let url = format!("{AUD}{path}");
    let now = NOW.unix_timestamp();
    let (s, _, b) = w
        .call(send("DPoP", Some(proof("GET", &url, "p1", now))))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Replayed proof.
    let (s, h, _) = w
        .call(send("DPoP", Some(proof("GET", &url, "p1", now))))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_dpop_proof")
    );
    for (name, req) in [
        (
            "wrong htm",
            send("DPoP", Some(proof("POST", &url, "p2", now))),
        ),
        (
            "wrong htu",
            send(
                "DPoP",
                Some(proof("GET", &format!("{AUD}{P}/balances"), "p3", now)),
            ),
        ),
        (
            "stale iat",
            send("DPoP", Some(proof("GET", &url, "p4", now - 3600))),
        ),
        (
            "iat too far ahead",
            send("DPoP", Some(proof("GET", &url, "p4b", now + 45))),
        ),
        ("no proof", send("DPoP", None)),
        (
            "Bearer scheme",
            send("Bearer", Some(proof("GET", &url, "p5", now))),
        ),
    ] {
        assert_eq!(w.call(req).await.0, StatusCode::UNAUTHORIZED, "{name}");
    }
    // A proof from another key.
    let other = SigningKey::generate(Alg::ES256, "x").unwrap();
    let mut h = serde_json::Map::new();
    h.insert("typ".into(), "dpop+jwt".into());
    h.insert(
        "jwk".into(),
        serde_json::to_value(other.public_jwk()).unwrap(),
    );
    let p = other.sign_with_header(&h, &json!({"htm": "GET", "htu": url, "iat": now, "jti": "p6", "ath": fapi_jose::sha256_b64(at.as_bytes())})).unwrap();
    assert_eq!(
        w.call(send("DPoP", Some(p))).await.0,
        StatusCode::UNAUTHORIZED
    );
}

// ---- headers --------------------------------------------------------------------------------

#[tokio::test]
async fn interaction_id_is_echoed_or_generated_on_success_and_error() {
    let w = world().await;
    let t = w.full_token();
    let id = "93bac548-d2de-4546-b106-880a5018460d";
    for (auth, want) in [
        (Some(t.as_str()), StatusCode::OK),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        let mut r = Request::get(format!("{P}/accounts")).header("x-fapi-interaction-id", id);
        if let Some(a) = auth {
            r = r.header("authorization", format!("Bearer {a}"));
        }
        let mut req = r.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(PeerCertificate(Arc::from(CERT_A)));
        let (s, h, _) = w.call(req).await;
        assert_eq!(s, want);
        assert_eq!(h["x-fapi-interaction-id"], id);
        // Absent: a fresh UUID.
        let mut r = Request::get(format!("{P}/accounts"));
        if let Some(a) = auth {
            r = r.header("authorization", format!("Bearer {a}"));
        }
        let mut req = r.body(Body::empty()).unwrap();
        req.extensions_mut()
            .insert(PeerCertificate(Arc::from(CERT_A)));
        let (s, h, _) = w.call(req).await;
        assert_eq!(s, want);
        uuid::Uuid::parse_str(h["x-fapi-interaction-id"].to_str().unwrap()).unwrap();
    }
    // Unknown endpoint and wrong method: OB errors, with an id.
    let (s, h, b) = w
        .call(
            Request::get(format!("{P}/direct-debits"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(h.contains_key("x-fapi-interaction-id") && b["Code"] == "404 NotFound");
    let (s, h, _) = w
        .call(
            Request::delete(format!("{P}/accounts"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(h.contains_key("x-fapi-interaction-id"));
    // A malformed id is refused, with a generated one in the response.
    let (s, h, b) = w
        .call(
            Request::get(format!("{P}/accounts"))
                .header("x-fapi-interaction-id", "not-a-uuid")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_ne!(h["x-fapi-interaction-id"], "not-a-uuid");
}

#[tokio::test]
async fn unacceptable_accept_is_406_and_bad_body_type_is_415() {
    let w = world().await;
    let t = w.full_token();
    let mk = |accept: Option<&str>, ct: Option<&str>, body: &'static str| {
        let mut r =
            Request::get(format!("{P}/accounts")).header("authorization", format!("Bearer {t}"));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        if let Some(c) = ct {
            r = r.header("content-type", c);
        }
        let mut req = r
            .header("content-length", body.len())
            .body(Body::from(body))
            .unwrap();
        req.extensions_mut()
            .insert(PeerCertificate(Arc::from(CERT_A)));
        req
    };
    let (s, h, b) = w.call(mk(Some("application/xml"), None, "")).await;
    assert_eq!(s, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(b["Errors"][0]["Path"], "Accept");
    assert!(h.contains_key("x-fapi-interaction-id"));
    assert_eq!(
        w.call(mk(Some("application/json"), None, "")).await.0,
        StatusCode::OK
    );
    let (s, _, b) = w.call(mk(None, Some("text/plain"), "hello")).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(b["Code"], "415 UnsupportedMediaType");
    assert_eq!(
        w.call(mk(None, Some("application/json"), "{}")).await.0,
        StatusCode::OK
    );
    // FAPI customer headers are accepted when well-formed.
    let mut req = Request::get(format!("{P}/accounts"))
        .header("authorization", format!("Bearer {t}"))
        .header("x-fapi-customer-ip-address", "203.0.113.7")
        .header("x-fapi-auth-date", "Sun, 10 Sep 2017 19:43:31 GMT")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(PeerCertificate(Arc::from(CERT_A)));
    assert_eq!(w.call(req).await.0, StatusCode::OK);
    let req = Request::get(format!("{P}/accounts"))
        .header("x-fapi-customer-ip-address", "somewhere")
        .body(Body::empty())
        .unwrap();
    assert_eq!(w.call(req).await.0, StatusCode::BAD_REQUEST);
}

// ---- OpenAPI --------------------------------------------------------------------------------

#[tokio::test]
async fn openapi_document_matches_the_routes_and_is_served() {
    use utoipa::OpenApi;
    let doc = resource_server::openapi::ApiDoc::openapi();
    let documented: BTreeSet<String> = doc.paths.paths.keys().cloned().collect();
    let routed: BTreeSet<String> = api_routes().into_iter().map(|(p, _)| p).collect();
    assert_eq!(documented, routed);
    let json = serde_json::to_value(&doc).unwrap();
    assert!(json["openapi"].as_str().unwrap().starts_with("3.1"));
    let w = world().await;
    let (s, _, served) = w
        .call(
            Request::get(resource_server::openapi::OPENAPI_JSON_PATH)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(served, json, "the served document is the generated one");
    for path in &routed {
        let item = &served["paths"][path];
        let ok = ["get", "post", "delete"].iter().any(|m| {
            item[m]["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|k| k.starts_with('2')))
        });
        assert!(ok, "{path}");
    }
    for (path, method) in [
        ("/account-access-consents", "post"),
        ("/account-access-consents/{ConsentId}", "get"),
        ("/account-access-consents/{ConsentId}", "delete"),
    ] {
        let op = &served["paths"][format!("{P}{path}")][method];
        assert!(op.is_object(), "{method} {path}");
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "x-fapi-interaction-id"),
            "{method} {path}"
        );
    }
    assert!(served["components"]["schemas"]["ObReadConsentResponse"].is_object());
    let resp = w
        .app
        .clone()
        .oneshot(
            Request::get(format!("{}/", resource_server::openapi::SWAGGER_UI_PATH))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let html = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&html).contains("swagger"));
}
