//! Payment consents on the customer dashboard (ADR 0011): the card shows payee, amount,
//! reference, the account paid from, the consent's status in words and the payment's own
//! status; a used (paid) consent has no withdraw button and a forged withdrawal changes
//! nothing; withdrawing an authorised, unused one revokes it and its refresh token, and
//! the resource server then refuses the payment (and the funds check).

use fapi_conformance::Tpp;
use fapi_conformance::browser::{Customer, Page};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wekeza_tests::journey::{self, Ask};
use wekeza_tests::{Reply, TestPlatform};

const PISP: &str = "/open-banking/v4.0/pisp";
const SCHEME: &str = "KE.WEKEZA.AccountNumber";

fn url(p: &TestPlatform, path: &str) -> String {
    format!(
        "{}{PISP}{path}",
        p.kit.resource_base_url.trim_end_matches('/')
    )
}

/// The persona's first KES current/savings account: (bank id, number, nickname).
pub(crate) fn first_account(p: &TestPlatform, username: &str) -> (String, String, String) {
    use authz_server::clock::Clock;
    let today = time::OffsetDateTime::from_unix_timestamp(p.clock.now())
        .unwrap()
        .date();
    let bank = core_bank::generate(&core_bank::GeneratorConfig::sandbox(today)).unwrap();
    let c = bank.customer_by_username(username).unwrap();
    let a = bank
        .accounts_of(&c.id)
        .into_iter()
        .find(|a| {
            a.kind != core_bank::AccountKind::CreditCard && a.currency == core_bank::Currency::KES
        })
        .unwrap();
    (a.id, a.identification.identification, a.nickname)
}

fn consent_body(amount: &str, creditor: &str) -> Value {
    json!({
        "Data": {"Initiation": {
            "InstructionIdentification": "INSTR-D",
            "EndToEndIdentification": "E2E-D",
            "InstructedAmount": {"Amount": amount, "Currency": "KES"},
            "CreditorAccount": {"SchemeName": SCHEME, "Identification": creditor, "Name": "Bob's Shop"},
            "RemittanceInformation": {"Reference": "INV-DASH-7"}
        }},
        "Risk": {"PaymentContextCode": "EcommerceGoods"}
    })
}

async fn call(tpp: &Tpp, method: Method, url: &str, token: &str, body: Option<&Value>) -> Reply {
    let key = uuid::Uuid::new_v4().to_string();
    let interaction = uuid::Uuid::new_v4().to_string();
    let h = [
        ("x-fapi-interaction-id", interaction.as_str()),
        ("x-idempotency-key", key.as_str()),
    ];
    tpp.resource_with_headers(method, url, token, body, &h, false)
        .await
        .unwrap()
}

fn code(r: &Reply) -> &str {
    r.body["Errors"][0]["ErrorCode"]
        .as_str()
        .unwrap_or_default()
}

/// A payment consent created by the TPP and authorised by alice from `from`: (id, body,
/// token response).
async fn authorised_payment(
    p: &TestPlatform,
    tpp: &Tpp,
    amount: &str,
    to: &str,
    from: &str,
) -> (String, Value, Reply) {
    let cc = tpp.client_credentials("payments").await.unwrap();
    let cc = cc.str("access_token").unwrap().to_owned();
    let body = consent_body(amount, to);
    let r = call(
        tpp,
        Method::POST,
        &url(p, "/domestic-payment-consents"),
        &cc,
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    let t = journey::approve(p, tpp, Ask::Intent(&id), Some(from)).await;
    (id, body, t)
}

pub(crate) fn location(page: &Page) -> &str {
    page.location.as_deref().unwrap_or_default()
}

pub(crate) async fn dashboard(p: &TestPlatform) -> (Customer, Page) {
    let agent = p.customer();
    let c = &p.kit.customer;
    let login = agent.get("/account/login").await.unwrap();
    let csrf = login.csrf().unwrap();
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
    assert_eq!(location(&r), "/account/login/otp", "{}", r.html);
    let otp = agent.get("/account/login/otp").await.unwrap();
    let r = agent
        .post(
            "/account/login/otp",
            &[("csrf", &otp.csrf().unwrap()), ("otp", &p.fresh_otp())],
        )
        .await
        .unwrap();
    assert_eq!(location(&r), "/account", "{}", r.html);
    let dash = agent.get("/account").await.unwrap();
    assert_eq!(dash.status, 200, "{}", dash.html);
    (agent, dash)
}

pub(crate) fn card_of(html: &str, consent_id: &str) -> String {
    let mark = format!("data-consent-id=\"{consent_id}\"");
    let i = html
        .find(&mark)
        .unwrap_or_else(|| panic!("{consent_id} not listed"));
    let rest = &html[i..];
    rest[..rest.find("</article>").unwrap_or(rest.len())].to_owned()
}

async fn balance(p: &TestPlatform, id: &str) -> i64 {
    let ledger = p.state().store.payments().expect("a payment ledger");
    ledger.ledger_account(id).await.unwrap().unwrap().balance
}

#[tokio::test]
async fn payment_consents_on_the_dashboard_paid_ones_stay_withdrawing_unused_ones_stops_payment() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let (from, _, nickname) = first_account(&p, "alice");
    let (_, to, _) = first_account(&p, "bob");

    // One consent used at once (paid), one left authorised.
    let (paid_id, paid_body, paid_t) = authorised_payment(&p, tpp, "12.50", &to, &from).await;
    let mut pay = paid_body.clone();
    pay["Data"]["ConsentId"] = json!(paid_id);
    let paid_at = paid_t.str("access_token").unwrap().to_owned();
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &paid_at,
        Some(&pay),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "ACSC");
    let (open_id, open_body, open_t) = authorised_payment(&p, tpp, "165.88", &to, &from).await;
    let open_at = open_t.str("access_token").unwrap().to_owned();

    let (agent, dash) = dashboard(&p).await;
    assert!(!dash.html.contains("<script"));
    // The authorised one: what, to whom, reference, from which account, in words.
    let card = card_of(&dash.html, &open_id);
    assert!(card.contains("data-status=\"active\""), "{card}");
    for want in [
        "<strong>KES 165.88</strong>",
        "Bob&#39;s Shop",
        &format!("Wekeza account {to}"),
        "INV-DASH-7",
        &nickname,
        "Authorised by you, not used yet",
    ] {
        assert!(card.contains(want), "{want} missing: {card}");
    }
    assert!(
        !card.contains("class=\"payment-status\""),
        "no payment yet: {card}"
    );
    let open_revoke = format!("/account/consents/{open_id}/revoke");
    assert!(card.contains(&open_revoke), "{card}");
    // The paid one: badge, payment status from the ledger, history, no withdraw button.
    let card = card_of(&dash.html, &paid_id);
    assert!(card.contains("data-status=\"paid\""), "{card}");
    assert!(card.contains("<strong>KES 12.50</strong>"), "{card}");
    assert!(card.contains("Used: the payment was made"), "{card}");
    assert!(card.contains("<dd class=\"payment-status\">Paid"), "{card}");
    assert!(card.contains("Payment instructed"), "{card}");
    assert!(card.contains("Payment: Paid"), "{card}");
    let paid_revoke = format!("/account/consents/{paid_id}/revoke");
    assert!(
        !card.contains(&paid_revoke),
        "a paid consent cannot be withdrawn: {card}"
    );

    // Forcing it anyway: the confirmation page sends the customer home, a POST changes
    // nothing (the consent stays consumed, no audit line).
    let csrf = dash.csrf().unwrap();
    let r = agent.get(&paid_revoke).await.unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account");
    let audit_before = p.state().store.list_audit(&paid_id).await.unwrap().len();
    let r = agent.post(&paid_revoke, &[("csrf", &csrf)]).await.unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let c = p
        .state()
        .store
        .find_consent(&paid_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, authz_store::ConsentStatus::Consumed);
    assert_eq!(
        p.state().store.list_audit(&paid_id).await.unwrap().len(),
        audit_before
    );

    // Withdraw the unused one through the confirmation page.
    let confirm = agent.get(&open_revoke).await.unwrap();
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    assert!(confirm.html.contains("<strong>KES 165.88</strong>"));
    let r = agent
        .post(&open_revoke, &[("csrf", &confirm.csrf().unwrap())])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let c = p
        .state()
        .store
        .find_consent(&open_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.status, authz_store::ConsentStatus::Revoked);
    assert_eq!(
        c.details["status_reason"]["description"],
        "revoked by the customer"
    );
    let card = card_of(&agent.get("/account").await.unwrap().html, &open_id);
    assert!(card.contains("data-status=\"revoked\""), "{card}");
    assert!(card.contains("You withdrew this payment"), "{card}");
    assert!(!card.contains(&open_revoke), "{card}");

    // The TPP: the payment is refused, the funds check too, nothing leaves the account;
    // the refresh token (if one was issued) is dead.
    let before = balance(&p, &from).await;
    let mut pay = open_body.clone();
    pay["Data"]["ConsentId"] = json!(open_id);
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &open_at,
        Some(&pay),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), code(&r)),
        (400, "UK.OBIE.Resource.InvalidConsentStatus"),
        "{:?}",
        r.body
    );
    let funds = call(
        tpp,
        Method::GET,
        &url(
            &p,
            &format!("/domestic-payment-consents/{open_id}/funds-confirmation"),
        ),
        &open_at,
        None,
    )
    .await;
    assert_eq!(funds.status, 400, "{:?}", funds.body);
    assert_eq!(balance(&p, &from).await, before);
    assert!(
        p.state()
            .store
            .payments()
            .unwrap()
            .ledger_check()
            .await
            .unwrap()
            .balance_mismatches
            .is_empty()
    );
    if let Some(rt) = open_t.str("refresh_token") {
        let r = tpp
            .token(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{:?}", r.body);
    }
    p.finish().await;
}
