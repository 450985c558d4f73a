//! Payment initiation end to end (issue 7): a TPP creates a domestic-payment consent,
//! the customer approves exactly that payment after strong authentication, the TPP
//! executes it once with the token bound to it, and tracks it; every rule refused with
//! an explained error; hundreds of concurrent payments leave the ledger balanced.

#![allow(clippy::inconsistent_digit_grouping)] // minor units written as major_minor

use fapi_conformance::browser::{Customer, Page};
use fapi_conformance::{Pkce, Tpp};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use wekeza_tests::journey::{self, Ask, exchange, intent_claims};
use wekeza_tests::{Reply, TestPlatform, jwt_claims, query_param};

const PISP: &str = "/open-banking/v4.0/pisp";
const SCHEME: &str = "KE.WEKEZA.AccountNumber";

pub(crate) fn url(p: &TestPlatform, path: &str) -> String {
    format!(
        "{}{PISP}{path}",
        p.kit.resource_base_url.trim_end_matches('/')
    )
}

/// A sandbox account: (ledger/bank id, account number).
#[derive(Clone, Debug)]
pub(crate) struct Acct {
    pub(crate) id: String,
    pub(crate) number: String,
}

/// The KES current/savings accounts of a persona, from the deterministic sandbox bank.
pub(crate) fn accounts_of(p: &TestPlatform, username: &str) -> Vec<Acct> {
    let today = time::OffsetDateTime::from_unix_timestamp(p.clock_now())
        .unwrap()
        .date();
    let bank = core_bank::generate(&core_bank::GeneratorConfig::sandbox(today)).unwrap();
    let c = bank.customer_by_username(username).unwrap();
    bank.accounts_of(&c.id)
        .into_iter()
        .filter(|a| {
            a.kind != core_bank::AccountKind::CreditCard && a.currency == core_bank::Currency::KES
        })
        .map(|a| Acct {
            id: a.id,
            number: a.identification.identification,
        })
        .collect()
}

trait Now {
    fn clock_now(&self) -> i64;
}

impl Now for TestPlatform {
    fn clock_now(&self) -> i64 {
        use authz_server::clock::Clock;
        self.clock.now()
    }
}

pub(crate) fn ledger(p: &TestPlatform) -> &dyn authz_store::PaymentStore {
    p.state().store.payments().expect("a payment ledger")
}

pub(crate) async fn balance(p: &TestPlatform, id: &str) -> i64 {
    ledger(p).ledger_account(id).await.unwrap().unwrap().balance
}

pub(crate) fn consent_body(amount: &str, creditor: &str, debtor: Option<&str>) -> Value {
    let mut b = json!({
        "Data": {"Initiation": {
            "InstructionIdentification": "INSTR-1",
            "EndToEndIdentification": "E2E-1",
            "InstructedAmount": {"Amount": amount, "Currency": "KES"},
            "CreditorAccount": {"SchemeName": SCHEME, "Identification": creditor, "Name": "Bob's Shop"},
            "RemittanceInformation": {"Reference": "INV-2026-001", "Unstructured": "November invoice"}
        }},
        "Risk": {"PaymentContextCode": "EcommerceGoods"}
    });
    if let Some(d) = debtor {
        b["Data"]["Initiation"]["DebtorAccount"] =
            json!({"SchemeName": SCHEME, "Identification": d});
    }
    b
}

pub(crate) fn payment_body(consent_id: &str, consent: &Value) -> Value {
    let mut b = consent.clone();
    b["Data"]["ConsentId"] = json!(consent_id);
    b
}

pub(crate) async fn cc_token(tpp: &Tpp, scope: &str) -> String {
    let t = if tpp.uses_dpop() {
        tpp.client_credentials_dpop(scope).await.unwrap()
    } else {
        tpp.client_credentials(scope).await.unwrap()
    };
    assert_eq!(t.status, 200, "{:?}", t.body);
    t.str("access_token").unwrap().to_owned()
}

/// A PISP call with `x-idempotency-key` (when given).
pub(crate) async fn call(
    tpp: &Tpp,
    method: Method,
    url: &str,
    token: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> Reply {
    let mut h = vec![("x-fapi-interaction-id", fapi_conformance::tpp::uuid_like())];
    if let Some(k) = key {
        h.push(("x-idempotency-key", k.to_owned()));
    }
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tpp.resource_with_headers(method, url, token, body, &h, false)
        .await
        .unwrap()
}

fn code(r: &Reply) -> String {
    r.body["Errors"][0]["ErrorCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `POST /domestic-payments` of consent `id` (created with `consent`) with the customer's
/// token, under a fresh idempotency key.
pub(crate) async fn pay(
    p: &TestPlatform,
    tpp: &Tpp,
    token: &str,
    id: &str,
    consent: &Value,
) -> Reply {
    call(
        tpp,
        Method::POST,
        &url(p, "/domestic-payments"),
        token,
        Some(&payment_body(id, consent)),
        Some(&key()),
    )
    .await
}

pub(crate) fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) async fn create_consent(p: &TestPlatform, tpp: &Tpp, body: &Value) -> String {
    let cc = cc_token(tpp, "payments").await;
    let r = call(
        tpp,
        Method::POST,
        &url(p, "/domestic-payment-consents"),
        &cc,
        Some(body),
        Some(&key()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "AWAU");
    r.body["Data"]["ConsentId"].as_str().unwrap().to_owned()
}

/// PAR for the payment consent, then the customer signs in: the consent page.
async fn consent_page(p: &TestPlatform, tpp: &Tpp, pkce: &Pkce, id: &str) -> (Customer, Page) {
    journey::consent_page(p, tpp, pkce, Ask::Intent(id)).await
}

/// [`consent_page`] signed in as `username` (alice, or a load-test pool customer sharing
/// her accounts and credentials) with `otp`.
async fn consent_page_as(
    p: &TestPlatform,
    tpp: &Tpp,
    pkce: &Pkce,
    id: &str,
    username: &str,
    otp: &str,
) -> (Customer, Page) {
    journey::consent_page_as(p, tpp, pkce, Ask::Intent(id), username, otp).await
}

/// The customer approves consent `id`, paying from `from` when asked; the token reply.
pub(crate) async fn authorise(p: &TestPlatform, tpp: &Tpp, id: &str, from: Option<&str>) -> Reply {
    journey::approve(p, tpp, Ask::Intent(id), from).await
}

#[tokio::test]
async fn payment_journey_executes_once_and_tracks_status() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let (from, to) = (&alice[0], &bob[0]);
    let body = consent_body("165.88", &to.number, None);
    let id = create_consent(&p, tpp, &body).await;

    // The consent page shows what is paid, to whom, and lets alice pick the account.
    let pkce = Pkce::new();
    let (customer, page) = consent_page(&p, tpp, &pkce, &id).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html
            .contains("id=\"payment-amount\"><strong>KES 165.88</strong>"),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("id=\"payment-payee\">Bob&#39;s Shop</span>"),
        "{}",
        page.html
    );
    assert!(page.html.contains(&to.number));
    assert!(page.html.contains("id=\"payment-reference\">INV-2026-001"));
    let offered = page.account_choices();
    assert!(offered.contains(&from.id), "{offered:?}");
    assert!(
        !offered.iter().any(|a| bob.iter().any(|b| &b.id == a)),
        "only alice's accounts"
    );
    // Allow without choosing an account: asked again, nothing granted.
    let again = customer.post_decision(&page, true, &[]).await.unwrap();
    assert_eq!(again.status, 200);
    assert!(again.html.contains("Choose the account to pay from"));
    let back = customer
        .decide_accounts(&again, true, &[from.id.as_str()])
        .await
        .unwrap();
    let t = exchange(tpp, &back, &pkce).await;
    let at = t.str("access_token").unwrap().to_owned();
    assert_eq!(
        jwt_claims(&at)["consent_id"],
        id.as_str(),
        "bound to exactly this consent"
    );
    assert_eq!(
        jwt_claims(t.str("id_token").unwrap())["openbanking_intent_id"],
        id.as_str()
    );

    let cc = cc_token(tpp, "payments").await;
    let c = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/domestic-payment-consents/{id}")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(
        (c.status.as_u16(), c.body["Data"]["Status"].as_str()),
        (200, Some("AUTH")),
        "{:?}",
        c.body
    );
    assert_eq!(c.body["Data"]["Initiation"], body["Data"]["Initiation"]);

    let funds = call(
        tpp,
        Method::GET,
        &url(
            &p,
            &format!("/domestic-payment-consents/{id}/funds-confirmation"),
        ),
        &at,
        None,
        None,
    )
    .await;
    assert_eq!(funds.status, 200, "{:?}", funds.body);
    assert_eq!(
        funds.body["Data"]["FundsAvailableResult"]["FundsAvailable"],
        true
    );

    let (a0, b0) = (balance(&p, &from.id).await, balance(&p, &to.id).await);
    let pay = payment_body(&id, &body);
    let k = key();
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &at,
        Some(&pay),
        Some(&k),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body["Data"]["Status"], "ACSC",
        "to a Wekeza account: settled at once"
    );
    assert_eq!(r.body["Data"]["ConsentId"], id.as_str());
    let pid = r.body["Data"]["DomesticPaymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(balance(&p, &from.id).await, a0 - 165_88);
    assert_eq!(balance(&p, &to.id).await, b0 + 165_88);

    // The same key and body: the same payment, no second effect.
    let r2 = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &at,
        Some(&pay),
        Some(&k),
    )
    .await;
    assert_eq!(r2.status, 201, "{:?}", r2.body);
    assert_eq!(r2.body["Data"]["DomesticPaymentId"], pid.as_str());
    assert_eq!(balance(&p, &from.id).await, a0 - 165_88);
    // The same key with another body: refused, nothing changes.
    let mut other = pay.clone();
    other["Data"]["Initiation"]["EndToEndIdentification"] = json!("E2E-2");
    let r3 = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &at,
        Some(&other),
        Some(&k),
    )
    .await;
    assert_eq!(
        (r3.status.as_u16(), code(&r3).as_str()),
        (400, "UK.OBIE.Header.Invalid"),
        "{:?}",
        r3.body
    );
    // The consent replayed with a new key: refused (COND), nothing changes.
    let r4 = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &at,
        Some(&pay),
        Some(&key()),
    )
    .await;
    assert_eq!(
        (r4.status.as_u16(), code(&r4).as_str()),
        (400, "UK.OBIE.Resource.InvalidConsentStatus"),
        "{:?}",
        r4.body
    );
    assert_eq!(balance(&p, &from.id).await, a0 - 165_88);
    let c = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/domestic-payment-consents/{id}")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(c.body["Data"]["Status"], "COND");
    let funds = call(
        tpp,
        Method::GET,
        &url(
            &p,
            &format!("/domestic-payment-consents/{id}/funds-confirmation"),
        ),
        &at,
        None,
        None,
    )
    .await;
    assert_eq!(funds.status, 400, "a consumed consent: {:?}", funds.body);

    // Tracking with a client-credentials token.
    let g = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/domestic-payments/{pid}")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(
        (g.status.as_u16(), g.body["Data"]["Status"].as_str()),
        (200, Some("ACSC")),
        "{:?}",
        g.body
    );
    assert_eq!(g.body["Data"]["Initiation"], body["Data"]["Initiation"]);
    let d = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/domestic-payments/{pid}/payment-details")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    assert_eq!(d.body["Data"]["PaymentStatus"][0]["Status"], "ACSC");
    // Another TPP sees neither the consent nor the payment.
    let cc2 = cc_token(&p.pkjwt, "payments").await;
    for path in [
        format!("/domestic-payments/{pid}"),
        format!("/domestic-payment-consents/{id}"),
    ] {
        let r = call(&p.pkjwt, Method::GET, &url(&p, &path), &cc2, None, None).await;
        assert_eq!(
            (r.status.as_u16(), code(&r).as_str()),
            (400, "UK.OBIE.Resource.NotFound"),
            "{path}"
        );
    }
    let check = ledger(&p).ledger_check().await.unwrap();
    assert_eq!(check.entries_sum, 0);
    assert!(check.unbalanced_postings.is_empty() && check.balance_mismatches.is_empty());
    p.finish().await;
}

pub(crate) async fn wait_status(
    p: &TestPlatform,
    tpp: &Tpp,
    cc: &str,
    pid: &str,
    want: &str,
) -> Reply {
    for _ in 0..50 {
        let g = call(
            tpp,
            Method::GET,
            &url(p, &format!("/domestic-payments/{pid}")),
            cc,
            None,
            None,
        )
        .await;
        if g.body["Data"]["Status"] == want {
            return g;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("payment {pid} never reached {want}");
}

#[tokio::test]
async fn payments_to_other_banks_settle_or_come_back() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let alice = accounts_of(&p, "alice");
    let from = &alice[0];
    let cc = cc_token(tpp, "payments").await;
    let a0 = balance(&p, &from.id).await;
    let mut ids = Vec::new();
    // .00 settles; .13 is refused by the creditor's bank (sandbox rule), money back.
    for (amount, creditor) in [("10.00", "ELSEWHERE-1"), ("20.13", "ELSEWHERE-2")] {
        let body = consent_body(amount, creditor, Some(&from.number));
        let id = create_consent(&p, tpp, &body).await;
        let t = authorise(&p, tpp, &id, None).await;
        let at = t.str("access_token").unwrap().to_owned();
        let r = call(
            tpp,
            Method::POST,
            &url(&p, "/domestic-payments"),
            &at,
            Some(&payment_body(&id, &body)),
            Some(&key()),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["Data"]["Status"], "ACSP", "in clearing");
        ids.push(
            r.body["Data"]["DomesticPaymentId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        balance(&p, &from.id).await,
        a0 - 10_00 - 20_13,
        "both debited"
    );
    p.clock.advance(5);
    wait_status(&p, tpp, &cc, &ids[0], "ACSC").await;
    let r = wait_status(&p, tpp, &cc, &ids[1], "RJCT").await;
    assert_eq!(
        r.body["Data"]["StatusReason"][0]["StatusReasonCode"],
        "AC04"
    );
    assert_eq!(
        balance(&p, &from.id).await,
        a0 - 10_00,
        "the refused payment's money is back"
    );
    let d = call(
        tpp,
        Method::GET,
        &url(
            &p,
            &format!("/domestic-payments/{}/payment-details", ids[1]),
        ),
        &cc,
        None,
        None,
    )
    .await;
    let steps: Vec<&str> = d.body["Data"]["PaymentStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Status"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["ACSP", "RJCT"]);
    let check = ledger(&p).ledger_check().await.unwrap();
    assert_eq!(check.entries_sum, 0);
    assert!(check.unbalanced_postings.is_empty() && check.balance_mismatches.is_empty());
    p.finish().await;
}

#[tokio::test]
async fn payment_rules_refuse_and_change_nothing() {
    let p = TestPlatform::spawn().await;
    // DPoP client: its proofs and assertions follow the server clock, which sign-ins move.
    let tpp = &p.dpop;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let from = &alice[0];
    let cc = cc_token(tpp, "payments").await;
    let consents = url(&p, "/domestic-payment-consents");
    let body = consent_body("12.50", &bob[0].number, Some(&from.number));

    // Consent creation: the key is required and short; the body is validated.
    let r = call(tpp, Method::POST, &consents, &cc, Some(&body), None).await;
    assert_eq!(
        (r.status.as_u16(), code(&r).as_str()),
        (400, "UK.OBIE.Header.Missing")
    );
    let r = call(
        tpp,
        Method::POST,
        &consents,
        &cc,
        Some(&body),
        Some(&"k".repeat(41)),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), code(&r).as_str()),
        (400, "UK.OBIE.Header.Invalid")
    );
    let mut bad = body.clone();
    bad["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("12.505");
    let r = call(tpp, Method::POST, &consents, &cc, Some(&bad), Some(&key())).await;
    assert_eq!(
        (r.status.as_u16(), code(&r).as_str()),
        (400, "UK.OBIE.Field.Invalid"),
        "{:?}",
        r.body
    );
    assert_eq!(
        r.body["Errors"][0]["Path"],
        "Data.Initiation.InstructedAmount.Amount"
    );
    // A token without scope payments: refused.
    let accounts_cc = cc_token(tpp, "accounts").await;
    let r = call(
        tpp,
        Method::POST,
        &consents,
        &accounts_cc,
        Some(&body),
        Some(&key()),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // Idempotent creation: same key and body → the same consent; other body → refused.
    let k = key();
    let r1 = call(tpp, Method::POST, &consents, &cc, Some(&body), Some(&k)).await;
    let r2 = call(tpp, Method::POST, &consents, &cc, Some(&body), Some(&k)).await;
    assert_eq!((r1.status.as_u16(), r2.status.as_u16()), (201, 201));
    assert_eq!(r1.body["Data"]["ConsentId"], r2.body["Data"]["ConsentId"]);
    let r3 = call(
        tpp,
        Method::POST,
        &consents,
        &cc,
        Some(&bad_body_other_amount(&body)),
        Some(&k),
    )
    .await;
    assert_eq!(
        (r3.status.as_u16(), code(&r3).as_str()),
        (400, "UK.OBIE.Header.Invalid")
    );
    let id = r1.body["Data"]["ConsentId"].as_str().unwrap().to_owned();

    // Another TPP cannot authorise this consent.
    let extra = [
        ("scope", "openid payments"),
        ("claims", &intent_claims(&id)),
    ];
    let par = p.mtls.par(&Pkce::new(), "s", "n", &extra).await.unwrap();
    assert_eq!(par.status, 400, "{:?}", par.body);
    // Nor can this TPP without scope payments.
    let par = tpp
        .par(
            &Pkce::new(),
            "s",
            "n",
            &[
                ("scope", "openid accounts"),
                ("claims", &intent_claims(&id)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(par.status, 400, "{:?}", par.body);

    let t = authorise(&p, tpp, &id, None).await;
    let at = t.str("access_token").unwrap().to_owned();
    let a0 = balance(&p, &from.id).await;
    let pay = payment_body(&id, &body);
    let payments = url(&p, "/domestic-payments");
    // Initiation or Risk differing from the consent: refused, consent stays AUTH.
    let mut more = pay.clone();
    more["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("99.50");
    let mut payee = pay.clone();
    payee["Data"]["Initiation"]["CreditorAccount"]["Identification"] = json!("ATTACKER-1");
    let mut risk = pay.clone();
    risk["Risk"] = json!({"PaymentContextCode": "PartyToParty"});
    for (b, path) in [
        (&more, "Data.Initiation.InstructedAmount"),
        (&payee, "Data.Initiation.CreditorAccount"),
        (&risk, "Risk"),
    ] {
        let r = call(tpp, Method::POST, &payments, &at, Some(b), Some(&key())).await;
        assert_eq!(
            (r.status.as_u16(), code(&r).as_str()),
            (400, "UK.OBIE.Resource.ConsentMismatch"),
            "{:?}",
            r.body
        );
        assert_eq!(r.body["Errors"][0]["Path"], path);
    }
    // The client-credentials token cannot execute a payment.
    let r = call(tpp, Method::POST, &payments, &cc, Some(&pay), Some(&key())).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // A token for another consent cannot execute this one.
    let body2 = consent_body("1.00", &bob[0].number, Some(&from.number));
    let id2 = create_consent(&p, tpp, &body2).await;
    let t2 = authorise(&p, tpp, &id2, None).await;
    let at2 = t2.str("access_token").unwrap().to_owned();
    let r = call(tpp, Method::POST, &payments, &at2, Some(&pay), Some(&key())).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // Nor another TPP with its own token: the body names a consent the token is not for.
    let body3 = consent_body("1.00", &bob[0].number, Some(&from.number));
    let id3 = create_consent(&p, &p.mtls, &body3).await;
    let t3 = authorise(&p, &p.mtls, &id3, None).await;
    let at3 = t3.str("access_token").unwrap().to_owned();
    let r = call(
        &p.mtls,
        Method::POST,
        &payments,
        &at3,
        Some(&pay),
        Some(&key()),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(balance(&p, &from.id).await, a0, "nothing moved");
    let c = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/domestic-payment-consents/{id}")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(c.body["Data"]["Status"], "AUTH");
    // The matching payment goes through.
    let r = call(tpp, Method::POST, &payments, &at, Some(&pay), Some(&key())).await;
    assert_eq!(
        (r.status.as_u16(), r.body["Data"]["Status"].as_str()),
        (201, Some("ACSC")),
        "{:?}",
        r.body
    );
    assert_eq!(balance(&p, &from.id).await, a0 - 12_50);
    p.finish().await;
}

fn bad_body_other_amount(b: &Value) -> Value {
    let mut o = b.clone();
    o["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("13.50");
    o
}

#[tokio::test]
async fn customer_decisions_bind_the_consent() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let cc = cc_token(tpp, "payments").await;

    // A consent naming bob's account as the debtor: alice cannot approve it.
    let id = create_consent(
        &p,
        tpp,
        &consent_body("5.00", &alice[0].number, Some(&bob[0].number)),
    )
    .await;
    let pkce = Pkce::new();
    let (_customer, page) = consent_page(&p, tpp, &pkce, &id).await;
    assert_eq!(page.status, 400, "{}", page.html);
    assert!(page.html.contains("This payment cannot be approved"));

    // A tampered form picking bob's account: refused, no code, nothing granted.
    let id = create_consent(&p, tpp, &consent_body("5.00", "ELSEWHERE", None)).await;
    let pkce = Pkce::new();
    let (customer, page) = consent_page(&p, tpp, &pkce, &id).await;
    let r = customer
        .post_decision(&page, true, &[bob[0].id.as_str()])
        .await
        .unwrap();
    assert_ne!(r.status, 303, "{}", r.html);
    let c = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/domestic-payment-consents/{id}")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(c.body["Data"]["Status"], "AWAU");

    // Refused by the customer: RJCT and access_denied; it cannot be authorised again.
    let id = create_consent(&p, tpp, &consent_body("5.00", "ELSEWHERE", None)).await;
    let pkce = Pkce::new();
    let (customer, page) = consent_page(&p, tpp, &pkce, &id).await;
    let back = customer.decide_accounts(&page, false, &[]).await.unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    let c = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/domestic-payment-consents/{id}")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(c.body["Data"]["Status"], "RJCT");
    let extra = [
        ("scope", "openid payments"),
        ("claims", &intent_claims(&id)),
    ];
    let par = tpp.par(&Pkce::new(), "s", "n", &extra).await.unwrap();
    assert_eq!(par.status, 400, "{:?}", par.body);

    // Beyond the available balance: funds-confirmation says so, the payment is RJCT AM04.
    let from = &alice[0];
    let avail = ledger(&p)
        .ledger_account(&from.id)
        .await
        .unwrap()
        .unwrap()
        .available();
    let too_much = format!("{}.{:02}", (avail + 1) / 100, (avail + 1) % 100);
    let body = consent_body(&too_much, &bob[0].number, Some(&from.number));
    let id = create_consent(&p, tpp, &body).await;
    let t = authorise(&p, tpp, &id, None).await;
    let at = t.str("access_token").unwrap().to_owned();
    let f = call(
        tpp,
        Method::GET,
        &url(
            &p,
            &format!("/domestic-payment-consents/{id}/funds-confirmation"),
        ),
        &at,
        None,
        None,
    )
    .await;
    assert_eq!(
        f.body["Data"]["FundsAvailableResult"]["FundsAvailable"],
        false
    );
    let a0 = balance(&p, &from.id).await;
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &at,
        Some(&payment_body(&id, &body)),
        Some(&key()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "RJCT");
    assert_eq!(
        r.body["Data"]["StatusReason"][0]["StatusReasonCode"],
        "AM04"
    );
    assert_eq!(balance(&p, &from.id).await, a0, "nothing moved");
    p.finish().await;
}

/// Hundreds of concurrent payments from one account, a quarter of them sent twice with
/// the same idempotency key: every key has one effect, no consent pays twice, none is
/// lost, the balance never passes the limit, every refusal is for funds, and the ledger
/// balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_payments_from_one_account_keep_the_ledger_exact() {
    const N: usize = 200;
    // N sign-ins: a TOTP code is accepted once per customer and time step, so the load-test
    // pool customers (alice's accounts and credentials) sign in, POOL per step.
    const POOL: u32 = 50;
    // (N calls at once from one client: beyond the sandbox plan's burst, so no gateway.)
    let p =
        TestPlatform::spawn_with(|c| (c.sandbox_load_customers, c.gateway_enabled) = (POOL, false))
            .await;
    let pool = p.kit.customer_pool.clone().expect("customer pool");
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let from = &alice[0];
    let avail = ledger(&p)
        .ledger_account(&from.id)
        .await
        .unwrap()
        .unwrap()
        .available();
    let opening = balance(&p, &from.id).await;
    // Each asks about 1/150 of what is available: ~150 fit, the rest must be refused.
    let unit = (avail / 150).max(1);
    let mut reqs = Vec::new();
    for i in 0..N {
        let minor = unit + (i as i64 % 7);
        let amount = format!("{}.{:02}", minor / 100, minor % 100);
        let creditor = if i % 4 == 0 {
            "ELSEWHERE".to_owned()
        } else {
            bob[0].number.clone()
        };
        let body = consent_body(&amount, &creditor, Some(&from.number));
        let id = create_consent(&p, tpp, &body).await;
        let n = (i as u32 % POOL) + 1;
        if n == 1 {
            p.clock.advance(30);
        }
        use authz_server::clock::Clock;
        let otp =
            fapi_conformance::browser::totp(&p.kit.customer.totp_secret, p.clock.now()).unwrap();
        let pkce = Pkce::new();
        let (customer, page) = consent_page_as(&p, tpp, &pkce, &id, &pool.username(n), &otp).await;
        let back = customer.decide_accounts(&page, true, &[]).await.unwrap();
        let t = exchange(tpp, &back, &pkce).await;
        reqs.push((
            id.clone(),
            t.str("access_token").unwrap().to_owned(),
            payment_body(&id, &body),
            key(),
        ));
    }
    let dups: Vec<_> = reqs.iter().step_by(4).cloned().collect();
    let all: Vec<_> = reqs.iter().chain(dups.iter()).cloned().collect();
    let target = url(&p, "/domestic-payments");
    let started = std::time::Instant::now();
    let results = futures::future::join_all(
        all.iter()
            .map(|(_, at, body, k)| call(tpp, Method::POST, &target, at, Some(body), Some(k))),
    )
    .await;
    eprintln!(
        "{} concurrent POST /domestic-payments ({} backend, debug build): {:?}",
        all.len(),
        wekeza_tests::backend(),
        started.elapsed()
    );
    let mut by_key: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((_, _, _, k), r) in all.iter().zip(&results) {
        assert_eq!(r.status, 201, "every request answered: {:?}", r.body);
        let st = r.body["Data"]["Status"].as_str().unwrap();
        if st == "RJCT" {
            assert_eq!(
                r.body["Data"]["StatusReason"][0]["StatusReasonCode"], "AM04",
                "only funds refuse"
            );
        }
        by_key.entry(k.clone()).or_default().insert(
            r.body["Data"]["DomesticPaymentId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(by_key.len(), N);
    assert!(
        by_key.values().all(|ids| ids.len() == 1),
        "a duplicate key named another payment"
    );
    // Every consent paid exactly once; the balance is the opening minus what was accepted.
    let store = ledger(&p);
    let mut paid = 0i64;
    let (mut accepted, mut refused) = (0, 0);
    for ids in by_key.values() {
        let pid = ids.iter().next().unwrap();
        let pay = store
            .find_payment(pid)
            .await
            .unwrap()
            .expect("acknowledged payment stored");
        if pay.status == "RJCT" {
            refused += 1;
        } else {
            accepted += 1;
            paid += pay.amount;
        }
    }
    for (id, _, _, _) in &reqs {
        let c = p.state().store.find_consent(id).await.unwrap().unwrap();
        assert_eq!(c.status, authz_store::ConsentStatus::Consumed);
    }
    assert_eq!(accepted + refused, N, "none lost");
    assert!(
        refused > 0 && accepted > 100,
        "accepted {accepted}, refused {refused}"
    );
    let bal = balance(&p, &from.id).await;
    assert_eq!(bal, opening - paid);
    let acct = store.ledger_account(&from.id).await.unwrap().unwrap();
    assert!(acct.available() >= 0, "never below the limit");
    let check = store.ledger_check().await.unwrap();
    assert_eq!(check.entries_sum, 0);
    assert!(
        check.unbalanced_postings.is_empty() && check.balance_mismatches.is_empty(),
        "{check:?}"
    );
    p.finish().await;
}

/// The booked balance (ITBD) of an account-information balances answer, in minor units.
fn booked_minor(r: &Reply) -> i64 {
    let b = r.body["Data"]["Balance"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["Type"] == "ITBD")
        .unwrap()
        .clone();
    let s = b["Amount"]["Amount"].as_str().unwrap().replace('.', "");
    let v: i64 = s.parse().unwrap();
    if b["CreditDebitIndicator"] == "Debit" {
        -v
    } else {
        v
    }
}

#[tokio::test]
async fn account_information_balances_show_payments() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let from = &alice[0];
    // Account access to alice's account (balances only).
    let aisp = format!(
        "{}/open-banking/v4.0/aisp",
        p.kit.resource_base_url.trim_end_matches('/')
    );
    let acc_cc = cc_token(tpp, "accounts").await;
    let r = tpp
        .resource(
            Method::POST,
            &format!("{aisp}/account-access-consents"),
            &acc_cc,
            Some(
                &json!({"Data": {"Permissions": ["ReadAccountsBasic", "ReadBalances"],
                "ExpirationDateTime": "2099-01-01T00:00:00Z"}, "Risk": {}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.body);
    let aid = r.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    let pkce = Pkce::new();
    let extra = [
        ("scope", "openid accounts"),
        ("claims", &intent_claims(&aid)),
    ];
    let par = tpp.par(&pkce, "s", "n", &extra).await.unwrap();
    assert_eq!(par.status, 201, "{:?}", par.body);
    let (customer, page) =
        wekeza_tests::journey::kit_customer_signs_in_at(&p, tpp, par.str("request_uri").unwrap())
            .await;
    let back = customer
        .decide_accounts(&page, true, &[from.id.as_str()])
        .await
        .unwrap();
    let ais = exchange(tpp, &back, &pkce).await;
    let ais_at = ais.str("access_token").unwrap().to_owned();
    let balances = format!("{aisp}/accounts/{}/balances", from.id);
    let before = tpp
        .resource(Method::GET, &balances, &ais_at, None)
        .await
        .unwrap();
    assert_eq!(before.status, 200, "{:?}", before.body);
    assert_eq!(
        booked_minor(&before),
        balance(&p, &from.id).await,
        "AIS reads the ledger"
    );

    let body = consent_body("100.00", &bob[0].number, Some(&from.number));
    let id = create_consent(&p, tpp, &body).await;
    // The customer's account-information token (scope accounts, no payments) cannot pay.
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &ais_at,
        Some(&payment_body(&id, &body)),
        Some(&key()),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let t = authorise(&p, tpp, &id, None).await;
    let at = t.str("access_token").unwrap().to_owned();
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &at,
        Some(&payment_body(&id, &body)),
        Some(&key()),
    )
    .await;
    assert_eq!(r.body["Data"]["Status"], "ACSC", "{:?}", r.body);
    let after = tpp
        .resource(Method::GET, &balances, &ais_at, None)
        .await
        .unwrap();
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(booked_minor(&after), booked_minor(&before) - 100_00);
    p.finish().await;
}

/// The load mode that spreads payments over many debtor accounts
/// (`WEKEZA_SANDBOX_LOAD_ACCOUNTS`): load customer i banks as generated customer
/// i mod N, with accounts of its own in the ledger, not the sandbox customer's.
#[tokio::test]
async fn spread_load_customers_bank_with_accounts_of_their_own() {
    let p = TestPlatform::spawn_with(|c| {
        (c.sandbox_load_customers, c.sandbox_load_accounts) = (4, 2);
    })
    .await;
    let st = p.state();
    let pool = p.kit.customer_pool.clone().expect("customer pool");
    let bank_of = |username: String| async move {
        let rec = st
            .store
            .find_customer_by_username(&username)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{username} exists"));
        st.bank
            .customer_for_subject(&rec.id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{username} is linked to a bank customer"))
            .id
    };
    let alice = bank_of("alice".into()).await;
    let mut banks = Vec::new();
    for n in 1..=4 {
        let b = bank_of(pool.username(n)).await;
        let accounts = st.bank.accounts(&b).await.unwrap();
        assert!(!accounts.is_empty(), "load customer {n} has accounts");
        // Every account that can pay is in the ledger (credit cards are not ledger accounts).
        for a in &accounts {
            let in_ledger = ledger(&p).ledger_account(&a.id).await.unwrap().is_some();
            assert_eq!(
                in_ledger,
                a.kind != core_bank::AccountKind::CreditCard,
                "{} ({:?})",
                a.id,
                a.kind
            );
        }
        banks.push(b);
    }
    assert_eq!(banks[0], banks[2], "i mod N");
    assert_eq!(banks[1], banks[3], "i mod N");
    assert_ne!(banks[0], banks[1], "two debtor customers");
    assert!(
        !banks.contains(&alice),
        "not the sandbox customer's accounts"
    );
    p.finish().await;
}
