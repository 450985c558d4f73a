//! File-payment consents on the customer dashboard (ADR 0016), shown like a domestic
//! payment consent: how many payments, the total with its currency, the first payees and
//! "and N more", the file reference, the account paid from, the consent's status in words
//! and, once executed, what became of the payments; an executed file is spent (no
//! withdraw link), an authorised one is withdrawn with its reason recorded and the TPP's
//! execution is then refused.

#![allow(clippy::inconsistent_digit_grouping)] // minor units written as major_minor

use crate::dashboard_payments::{card_of, dashboard, first_account, location};
use crate::file_payments::{
    JSON_TYPE, approve, consent_body, consent_status, create, execute, item, json_file, major,
    payment_body, upload,
};
use crate::payments::{accounts_of, call, cc_token, key, ledger, url};
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn file_payment_consents_on_the_dashboard_like_payment_consents() {
    let p = wekeza_tests::TestPlatform::spawn().await;
    let tpp = &p.mtls;
    // The account alice pays from, with the name the dashboard shows for it.
    let (from_id, _, from_name) = first_account(&p, "alice");
    let to = &accounts_of(&p, "bob")[0];
    let available = ledger(&p)
        .ledger_account(&from_id)
        .await
        .unwrap()
        .unwrap()
        .available();
    let cc = cc_token(tpp, "payments").await;

    // An executed file of four: one item cannot be funded (RJCT), three are paid.
    let too_much = major(available + 1_00);
    let items = [
        item("PAY-1", "10.00", &to.number, "Bob's Shop"),
        item("PAY-2", &too_much, &to.number, "Grace <b>Wanjiru</b>"),
        item("PAY-3", "20.50", &to.number, "Kamau Hardware"),
        item("PAY-4", "5.00", &to.number, "Fourth Payee"),
    ];
    let sum = 10_00 + (available + 1_00) + 20_50 + 5_00;
    let file = json_file(&items);
    let done_body = consent_body(&file, JSON_TYPE, 4, &major(sum), None);
    let done_id = create(&p, tpp, &done_body).await;
    let (s, b) = upload(&p, tpp, &cc, &done_id, "application/json", &file, &key()).await;
    assert_eq!(s, 200, "{b:?}");
    let at = approve(&p, tpp, &done_id, Some(&from_id)).await;
    let r = execute(&p, tpp, &at, &payment_body(&done_id, &done_body), &key()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // An authorised file of two, not executed yet.
    let open_items = [
        item("RENT-1", "7.00", &to.number, "Landlord One"),
        item("RENT-2", "8.25", &to.number, "Landlord Two"),
    ];
    let open_file = json_file(&open_items);
    let open_body = consent_body(&open_file, JSON_TYPE, 2, "15.25", None);
    let open_id = create(&p, tpp, &open_body).await;
    let (s, b) = upload(
        &p,
        tpp,
        &cc,
        &open_id,
        "application/json",
        &open_file,
        &key(),
    )
    .await;
    assert_eq!(s, 200, "{b:?}");
    let open_at = approve(&p, tpp, &open_id, Some(&from_id)).await;

    let (agent, dash) = dashboard(&p).await;
    assert!(!dash.html.contains("<script"));
    // The executed one: the batch, the outcome from the ledger, spent.
    let card = card_of(&dash.html, &done_id);
    let total = format!("KES {}", major(sum));
    for want in [
        "data-status=\"paid\"",
        &format!("File of 4 payments, {total} in total"),
        "<strong>4</strong> payments in one file",
        &format!("<strong>{total}</strong>"),
        "Bob&#39;s Shop",
        &format!("Wekeza account {}", to.number),
        "KES 10.00",
        "Grace &#60;b&#62;Wanjiru&#60;/b&#62;",
        "Kamau Hardware",
        "and 1 more",
        "PAYROLL-NOV",
        &from_name,
        "Used: the payments were made",
        "<dd class=\"payment-status\">3 paid, 1 not paid",
        "Payments: 3 paid, 1 not paid",
    ] {
        assert!(card.contains(want), "{want} missing: {card}");
    }
    assert!(
        !card.contains("Fourth Payee"),
        "only the first payees: {card}"
    );
    assert!(!card.contains("Sign-in and profile"), "not generic: {card}");
    let done_revoke = format!("/account/consents/{done_id}/revoke");
    assert!(!card.contains(&done_revoke), "spent: {card}");
    // The authorised one: active, withdrawable, no outcome yet.
    let card = card_of(&dash.html, &open_id);
    for want in [
        "data-status=\"active\"",
        "<strong>2</strong> payments in one file",
        "<strong>KES 15.25</strong>",
        "Landlord One",
        "Landlord Two",
        "Authorised by you, not used yet",
    ] {
        assert!(card.contains(want), "{want} missing: {card}");
    }
    assert!(!card.contains("and 0 more"), "{card}");
    assert!(!card.contains("class=\"payment-status\""), "{card}");
    let open_revoke = format!("/account/consents/{open_id}/revoke");
    assert!(card.contains(&open_revoke), "{card}");

    // Withdrawn through the confirmation page (which shows the batch): its reason is
    // recorded like a payment consent's and the TPP sees it; the execution is refused.
    let confirm = agent.get(&open_revoke).await.unwrap();
    assert_eq!(confirm.status, 200, "{}", confirm.html);
    assert!(confirm.html.contains("<strong>KES 15.25</strong>"));
    let r = agent
        .post(&open_revoke, &[("csrf", &confirm.csrf().unwrap())])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(location(&r), "/account");
    let card = card_of(&agent.get("/account").await.unwrap().html, &open_id);
    assert!(card.contains("data-status=\"revoked\""), "{card}");
    assert!(card.contains("You withdrew these payments"), "{card}");
    assert!(!card.contains(&open_revoke), "{card}");
    assert_eq!(consent_status(&p, tpp, &cc, &open_id).await, "CANC");
    let g = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/file-payment-consents/{open_id}")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(
        g.body["Data"]["StatusReason"][0]["StatusReasonDescription"], "revoked by the customer",
        "{:?}",
        g.body
    );
    let r = execute(
        &p,
        tpp,
        &open_at,
        &payment_body(&open_id, &open_body),
        &key(),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        r.body["Errors"][0]["ErrorCode"],
        "UK.OBIE.Resource.InvalidConsentStatus"
    );
    p.finish().await;
}
