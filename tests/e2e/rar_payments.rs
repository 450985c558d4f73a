//! A domestic payment asked for in `authorization_details` (RFC 9396, type
//! `payment_initiation`; ADR 0017): PAR creates the consent, the customer approves it on
//! the same page as an intent-path payment, the token response carries the granted
//! entry with `consentId`, and that token pays exactly once.

#![allow(clippy::inconsistent_digit_grouping)] // minor units written as major_minor

use crate::payments::{Acct, accounts_of, balance, call, cc_token, key, url};
use authz_store::ConsentStatus;
use fapi_conformance::browser::{Customer, Page};
use fapi_conformance::{Pkce, Tpp};
use reqwest::Method;
use serde_json::{Value, json};
use wekeza_tests::journey::{self, Ask, exchange};
use wekeza_tests::{Reply, TestPlatform, jwt_claims, query_param};

const SCHEME: &str = "KE.WEKEZA.AccountNumber";

/// One `payment_initiation` entry paying `amount` KES to `creditor`.
fn entry(amount: &str, creditor: &str) -> Value {
    json!({
        "type": "payment_initiation",
        "instructedAmount": {"amount": amount, "currency": "KES"},
        "creditorAccount": {"schemeName": SCHEME, "identification": creditor},
        "creditorName": "Bob's Shop",
        "remittanceInformation": {"reference": "RAR-INV-7"}
    })
}

/// The OB `Initiation` the entry stands for (what the TPP sends with the payment).
fn initiation(amount: &str, creditor: &str) -> Value {
    json!({
        "InstructionIdentification": "NOTPROVIDED",
        "EndToEndIdentification": "NOTPROVIDED",
        "InstructedAmount": {"Amount": amount, "Currency": "KES"},
        "CreditorAccount": {"SchemeName": SCHEME, "Identification": creditor, "Name": "Bob's Shop"},
        "RemittanceInformation": {"Reference": "RAR-INV-7"}
    })
}

fn payment(consent_id: &str, initiation: &Value) -> Value {
    json!({"Data": {"ConsentId": consent_id, "Initiation": initiation}, "Risk": {}})
}

async fn par(tpp: &Tpp, pkce: &Pkce, details: &str, scope: &str) -> Reply {
    journey::par(tpp, pkce, Ask::Details(details), scope).await
}

/// PAR with `details`, then alice signs in: the consent page.
async fn consent_page(
    p: &TestPlatform,
    tpp: &Tpp,
    pkce: &Pkce,
    details: &Value,
) -> (Customer, Page) {
    let d = details.to_string();
    let (customer, page) = journey::consent_page(p, tpp, pkce, Ask::Details(&d)).await;
    assert_eq!(page.status, 200, "{}", page.html);
    (customer, page)
}

/// PAR with one entry, alice approves paying from `from`: (consent id, access token).
async fn authorised(p: &TestPlatform, tpp: &Tpp, details: &Value, from: &Acct) -> (String, String) {
    let d = details.to_string();
    let t = journey::approve(p, tpp, Ask::Details(&d), Some(from.id.as_str())).await;
    let id = t.body["authorization_details"][0]["consentId"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, t.str("access_token").unwrap().to_owned())
}

fn ob_code(r: &Reply) -> String {
    r.body["Errors"][0]["ErrorCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn consent_status(p: &TestPlatform, tpp: &Tpp, id: &str) -> Reply {
    let cc = cc_token(tpp, "payments").await;
    call(
        tpp,
        Method::GET,
        &url(p, &format!("/domestic-payment-consents/{id}")),
        &cc,
        None,
        None,
    )
    .await
}

#[tokio::test]
async fn rar_payment_journey_pays_once() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let (from, to) = (&alice[0], &bob[0]);
    let details = json!([entry("42.10", &to.number)]);

    // The consent page shows it like an intent-path payment, with alice's accounts.
    let pkce = Pkce::new();
    let (customer, page) = consent_page(&p, tpp, &pkce, &details).await;
    assert!(
        page.html
            .contains("id=\"payment-amount\"><strong>KES 42.10</strong>"),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("id=\"payment-payee\">Bob&#39;s Shop</span>")
    );
    assert!(page.html.contains(&to.number));
    assert!(page.html.contains("id=\"payment-reference\">RAR-INV-7"));
    let offered = page.account_choices();
    assert!(offered.contains(&from.id), "{offered:?}");
    assert!(!offered.iter().any(|a| bob.iter().any(|b| &b.id == a)));
    let back = customer
        .decide_accounts(&page, true, &[from.id.as_str()])
        .await
        .unwrap();
    let t = exchange(tpp, &back, &pkce).await;

    // The granted entry: what was asked, the consent id and the account paying.
    let granted = &t.body["authorization_details"][0];
    assert_eq!(granted["type"], "payment_initiation");
    assert_eq!(granted["instructedAmount"], details[0]["instructedAmount"]);
    assert_eq!(granted["debtorAccountId"], from.id.as_str());
    let id = granted["consentId"].as_str().unwrap().to_owned();
    let at = t.str("access_token").unwrap().to_owned();
    let claims = jwt_claims(&at);
    assert_eq!(claims["authorization_details"][0], *granted);
    assert_eq!(claims["consent_id"], id.as_str(), "bound to this consent");

    // The consent has the stored shape of the intent path: AUTH, Risk {}.
    let c = consent_status(&p, tpp, &id).await;
    assert_eq!(
        (c.status.as_u16(), c.body["Data"]["Status"].as_str()),
        (200, Some("AUTH")),
        "{:?}",
        c.body
    );
    assert_eq!(
        c.body["Data"]["Initiation"],
        initiation("42.10", &to.number)
    );
    assert_eq!(c.body["Risk"], json!({}));

    let payments = url(&p, "/domestic-payments");
    let (a0, b0) = (balance(&p, &from.id).await, balance(&p, &to.id).await);
    // An Initiation other than the granted one: refused, nothing moves.
    let r = call(
        tpp,
        Method::POST,
        &payments,
        &at,
        Some(&payment(&id, &initiation("42.11", &to.number))),
        Some(&key()),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), ob_code(&r).as_str()),
        (400, "UK.OBIE.Resource.ConsentMismatch"),
        "{:?}",
        r.body
    );
    assert_eq!(balance(&p, &from.id).await, a0, "nothing moved");
    assert_eq!(
        consent_status(&p, tpp, &id).await.body["Data"]["Status"],
        "AUTH"
    );

    // The granted payment: 201, once.
    let pay = payment(&id, &initiation("42.10", &to.number));
    let r = call(tpp, Method::POST, &payments, &at, Some(&pay), Some(&key())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["ConsentId"], id.as_str());
    assert_eq!(
        consent_status(&p, tpp, &id).await.body["Data"]["Status"],
        "COND"
    );
    // The token used for a second payment: the consent is consumed.
    let r = call(tpp, Method::POST, &payments, &at, Some(&pay), Some(&key())).await;
    assert_eq!(
        (r.status.as_u16(), ob_code(&r).as_str()),
        (400, "UK.OBIE.Resource.InvalidConsentStatus"),
        "{:?}",
        r.body
    );
    assert_eq!(balance(&p, &from.id).await, a0 - 42_10, "debited once");
    assert_eq!(balance(&p, &to.id).await, b0 + 42_10);
    p.finish().await;
}

#[tokio::test]
async fn rar_payment_requests_are_validated_at_par() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let good = entry("5.00", "0100123456789");
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut e = good.clone();
        f(&mut e);
        json!([e]).to_string()
    };
    for (details, path) in [
        (
            edit(&|e| e["chargeBearer"] = json!("Shared")),
            "authorization_details[0].chargeBearer",
        ),
        (
            edit(&|e| e["instructedAmount"]["amount"] = json!("5.001")),
            "authorization_details[0].instructedAmount.amount",
        ),
        (
            edit(&|e| e["instructedAmount"]["amount"] = json!("-5.00")),
            "authorization_details[0].instructedAmount.amount",
        ),
        (
            edit(&|e| drop(e.as_object_mut().unwrap().remove("creditorAccount"))),
            "authorization_details[0].creditorAccount",
        ),
        (
            json!([good, good]).to_string(),
            "only one payment_initiation",
        ),
        (
            json!([good, {"type": "account_information", "permissions": ["ReadBalances"]}])
                .to_string(),
            "cannot be combined",
        ),
    ] {
        let r = par(tpp, &Pkce::new(), &details, "openid payments").await;
        assert_eq!(r.status, 400, "{details}: {:?}", r.body);
        assert_eq!(r.error(), "invalid_authorization_details", "{details}");
        let why = r.body["error_description"].as_str().unwrap_or_default();
        assert!(why.contains(path), "{details}: {why}");
    }
    let ok = json!([good]).to_string();
    // Without scope payments: refused.
    let r = par(tpp, &Pkce::new(), &ok, "openid accounts").await;
    assert_eq!(
        (r.status.as_u16(), r.error()),
        (400, "invalid_scope"),
        "{:?}",
        r.body
    );
    // With an intent as well: refused.
    let claims =
        json!({"id_token": {"openbanking_intent_id": {"value": "pdc-x", "essential": true}}})
            .to_string();
    let extra = [
        ("scope", "openid payments"),
        ("authorization_details", ok.as_str()),
        ("claims", claims.as_str()),
    ];
    let r = tpp.par_dpop(&Pkce::new(), "s", "n", &extra).await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.error()),
        (400, "invalid_request"),
        "{:?}",
        r.body
    );
    // The valid request is accepted.
    let r = par(tpp, &Pkce::new(), &ok, "openid payments").await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Discovery lists the type now that it works.
    let types = p.pkjwt.discovery["authorization_details_types_supported"].clone();
    assert!(
        types
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "payment_initiation"),
        "{types}"
    );
    p.finish().await;
}

#[tokio::test]
async fn rar_payment_consents_are_their_tpps_and_their_customers() {
    let p = TestPlatform::spawn().await;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let from = &alice[0];
    let (id, _at) = authorised(&p, &p.mtls, &json!([entry("7.00", &bob[0].number)]), from).await;

    // Another TPP, with its own authorised RAR payment token, cannot pay this consent.
    let (_other, at_b) =
        authorised(&p, &p.dpop, &json!([entry("1.00", &bob[0].number)]), from).await;
    let a0 = balance(&p, &from.id).await;
    let r = call(
        &p.dpop,
        Method::POST,
        &url(&p, "/domestic-payments"),
        &at_b,
        Some(&payment(&id, &initiation("7.00", &bob[0].number))),
        Some(&key()),
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(balance(&p, &from.id).await, a0, "nothing moved");
    // Nor does it see it.
    let r = consent_status(&p, &p.dpop, &id).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        consent_status(&p, &p.mtls, &id).await.body["Data"]["Status"],
        "AUTH"
    );

    // Refused on the consent page: access_denied, the consent RJCT.
    let pkce = Pkce::new();
    let (customer, page) =
        consent_page(&p, &p.mtls, &pkce, &json!([entry("3.33", &bob[0].number)])).await;
    let back = customer.decide_accounts(&page, false, &[]).await.unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert!(query_param(&back, "code").is_none());
    let customer_id = p
        .state()
        .store
        .find_customer_by_username(&p.kit.customer.username)
        .await
        .unwrap()
        .unwrap()
        .id;
    let refused: Vec<_> = p
        .state()
        .store
        .list_consents_for_customer(&customer_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.kind == "domestic-payment" && c.status == ConsentStatus::Rejected)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].client_id, p.mtls.client_id);
    let r = consent_status(&p, &p.mtls, &refused[0].id).await;
    assert_eq!(r.body["Data"]["Status"], "RJCT", "{:?}", r.body);
    assert_eq!(
        r.body["Data"]["Initiation"]["InstructedAmount"]["Amount"],
        "3.33"
    );
    p.finish().await;
}
