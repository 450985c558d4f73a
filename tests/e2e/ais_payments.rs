//! Payments in the AIS transaction list: ledger postings (payment debits, incoming
//! credits) appear as booked transactions of the account, merged with the generated
//! history, under the consent's permissions, with the posting id as `TransactionId` (the
//! id the transaction alert carries).

use crate::alerts as al;
use crate::events as ev;
use crate::file_payments as fp;
use crate::payments as pay;
use authz_store::EVENT_TRANSACTION_CREATED;
use fapi_conformance::Tpp;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

const AISP: &str = "/open-banking/v4.0/aisp";
/// Every transaction, in detail.
const DETAIL: &[&str] = &[
    "ReadAccountsDetail",
    "ReadTransactionsDetail",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
];

async fn get(tpp: &Tpp, url: &str, token: &str) -> Value {
    let r = tpp.resource(Method::GET, url, token, None).await.unwrap();
    assert_eq!(r.status, 200, "{url}: {:?}", r.body);
    r.body
}

/// Every transaction of every page, following `Links.Next` from `url`.
async fn all_pages(tpp: &Tpp, url: &str, token: &str) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut next = Some(url.to_owned());
    let mut pages = 0;
    let mut total_pages = 0;
    while let Some(u) = next {
        let body = get(tpp, &u, token).await;
        pages += 1;
        total_pages = body["Meta"]["TotalPages"].as_u64().unwrap() as usize;
        out.extend(
            body["Data"]["Transaction"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        next = body["Links"]["Next"].as_str().map(str::to_owned);
        assert!(pages <= 100, "runaway paging");
    }
    assert_eq!(pages, total_pages, "every page reached once");
    (out, pages)
}

fn by_id<'a>(list: &'a [Value], id: &str) -> Vec<&'a Value> {
    list.iter().filter(|t| t["TransactionId"] == id).collect()
}

/// A platform with alerts, a receiver for them, and the keys their SETs verify with.
async fn with_receiver() -> (
    wekeza_tests::TestPlatform,
    Arc<ev::Inbox>,
    ev::Receiver,
    Vec<fapi_jose::Jwk>,
) {
    let p = al::spawn().await;
    let inbox = Arc::new(ev::Inbox::default());
    let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
    let keys = ev::published_keys(&p).await;
    (p, inbox, rx, keys)
}

#[tokio::test]
async fn payments_are_booked_transactions_of_the_account() {
    let (p, inbox, rx, keys) = with_receiver().await;
    let alice = pay::accounts_of(&p, "alice");
    let bob = pay::accounts_of(&p, "bob");
    let (acct, other_acct) = (&alice[0], &alice[1]);
    let (tpp, payer) = (&p.mtls, &p.dpop);
    al::subscribe(&p, tpp, rx.port, "/t", &[EVENT_TRANSACTION_CREATED]).await;
    let far = "2099-01-01T00:00:00Z";
    let (_, detail) = al::ais_consent(&p, tpp, DETAIL, &acct.id, far).await;
    let (_, basic) = al::ais_consent(
        &p,
        tpp,
        &[
            "ReadAccountsBasic",
            "ReadTransactionsBasic",
            "ReadTransactionsCredits",
            "ReadTransactionsDebits",
        ],
        &acct.id,
        far,
    )
    .await;
    let (_, credits) = al::ais_consent(
        &p,
        tpp,
        &[
            "ReadAccountsDetail",
            "ReadTransactionsDetail",
            "ReadTransactionsCredits",
        ],
        &acct.id,
        far,
    )
    .await;
    let url = ev::rs(&p, &format!("{AISP}/accounts/{}/transactions", acct.id));
    let before_total = all_pages(tpp, &url, &detail).await.0.len();
    assert!(before_total > 0, "the generated history is listed");

    // The customer pays out of the consented account; money arrives; and, elsewhere, a
    // payment from an account outside the consent and a credit to another customer.
    al::pay_out(&p, payer, acct, "ELSEWHERE-7", "12.34").await;
    al::incoming(&p, &acct.id, "25.50", "Carol Wanjiru", "RENT DEC").await;
    al::pay_out(&p, payer, other_acct, "ELSEWHERE-8", "4.44").await;
    al::incoming(&p, &bob[0].id, "9.99", "Zed", "BOB ONLY").await;
    // One alert per consent that may see the transaction: wait for a debit and a credit.
    ev::wait_for("both alerts", 20, || {
        let got = al::of_type(&inbox, "/t", &keys, EVENT_TRANSACTION_CREATED);
        ["Debit", "Credit"].iter().all(|i| {
            got.iter()
                .any(|c| al::body(c, EVENT_TRANSACTION_CREATED)["CreditDebitIndicator"] == *i)
        })
    })
    .await;
    let alerts = al::of_type(&inbox, "/t", &keys, EVENT_TRANSACTION_CREATED);
    let alert_id = |indicator: &str| {
        alerts
            .iter()
            .map(|c| al::body(c, EVENT_TRANSACTION_CREATED))
            .find(|b| b["CreditDebitIndicator"] == indicator)
            .map(|b| b["TransactionId"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (debit_id, credit_id) = (alert_id("Debit"), alert_id("Credit"));

    // Every page: each transaction once, newest first, nothing of another account, the
    // two postings more than before, under the alerts' TransactionIds.
    let (all, pages) = all_pages(tpp, &url, &detail).await;
    assert!(pages >= 1);
    assert_eq!(all.len(), before_total + 2);
    let ids: HashSet<&str> = all
        .iter()
        .map(|t| t["TransactionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), all.len(), "no transaction on two pages");
    let parsed: Vec<time::OffsetDateTime> = all
        .iter()
        .map(|t| {
            time::OffsetDateTime::parse(
                t["BookingDateTime"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .collect();
    assert!(
        parsed.windows(2).all(|w| w[0] >= w[1]),
        "newest first across pages"
    );
    for t in &all {
        assert_eq!(t["AccountId"], acct.id.as_str());
        assert_ne!(t["TransactionReference"], "BOB ONLY");
        assert_ne!(t["Amount"]["Amount"], "4.44", "{t}");
    }
    let pos = |id: &str| all.iter().position(|t| t["TransactionId"] == id).unwrap();
    assert!(pos(&credit_id) < pos(&debit_id), "the credit came later");
    let debit = &all[pos(&debit_id)];
    assert_eq!(debit["AccountId"], acct.id.as_str());
    assert_eq!(debit["CreditDebitIndicator"], "Debit");
    assert_eq!(debit["Status"], "BOOK");
    assert_eq!(debit["Amount"]["Amount"], "12.34");
    assert_eq!(debit["Amount"]["Currency"], "KES");
    assert_eq!(debit["TransactionReference"], "INV-2026-001");
    assert_eq!(debit["CreditorAccount"]["Identification"], "ELSEWHERE-7");
    assert_eq!(debit["CreditorAccount"]["Name"], "Bob's Shop");
    assert!(debit.get("DebtorAccount").is_none());
    let credit = &all[pos(&credit_id)];
    assert_eq!(credit["CreditDebitIndicator"], "Credit");
    assert_eq!(credit["Amount"]["Amount"], "25.50");
    assert_eq!(credit["TransactionReference"], "RENT DEC");
    assert_eq!(credit["DebtorAccount"]["Name"], "Carol Wanjiru");
    // The balance after the credit is the account's ledger balance now.
    let now = pay::balance(&p, &acct.id).await;
    assert_eq!(
        credit["Balance"]["Amount"]["Amount"],
        format!("{}.{:02}", now / 100, now % 100).as_str()
    );
    // The bulk endpoint lists the consent's accounts the same way.
    let (bulk, _) = all_pages(tpp, &ev::rs(&p, &format!("{AISP}/transactions")), &detail).await;
    assert_eq!(bulk.len(), all.len());
    assert_eq!(by_id(&bulk, &debit_id).len(), 1);

    // Booking-date filters hold for postings too.
    let at = debit["BookingDateTime"].as_str().unwrap();
    let (since, _) = all_pages(
        tpp,
        &format!("{url}?fromBookingDateTime={}", urlencode(at)),
        &detail,
    )
    .await;
    assert_eq!(by_id(&since, &debit_id).len(), 1, "{since:?}");
    assert_eq!(by_id(&since, &credit_id).len(), 1);
    let until = parsed[pos(&debit_id)] - time::Duration::seconds(1);
    let until = until
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (older, _) = all_pages(
        tpp,
        &format!("{url}?toBookingDateTime={}", urlencode(&until)),
        &detail,
    )
    .await;
    assert!(by_id(&older, &debit_id).is_empty() && by_id(&older, &credit_id).is_empty());

    // Basic: the payment, without the reference or the payee.
    let (b, _) = all_pages(tpp, &url, &basic).await;
    let d = by_id(&b, &debit_id);
    assert_eq!(d.len(), 1, "{b:?}");
    assert_eq!(d[0]["Amount"]["Amount"], "12.34");
    assert_eq!(d[0]["CreditDebitIndicator"], "Debit");
    for hidden in [
        "TransactionReference",
        "CreditorAccount",
        "DebtorAccount",
        "Balance",
    ] {
        assert!(
            d[0].get(hidden).is_none(),
            "Basic shows no {hidden}: {}",
            d[0]
        );
    }

    // Credits only: the incoming credit, never the payment.
    let (c, _) = all_pages(tpp, &url, &credits).await;
    assert_eq!(by_id(&c, &credit_id).len(), 1);
    assert!(by_id(&c, &debit_id).is_empty());
    assert!(c.iter().all(|t| t["CreditDebitIndicator"] == "Credit"));

    // A payment from another of alice's accounts to this one (an internal credit, the
    // payer as DebtorAccount) and one the other bank returns (the debit, then the return's
    // credit, the payee as DebtorAccount): each booked once, under its alert's id.
    let seen = al::of_type(&inbox, "/t", &keys, EVENT_TRANSACTION_CREATED).len();
    al::pay_out(&p, payer, other_acct, &acct.number, "7.00").await;
    let returned = al::pay_out(&p, payer, acct, "ELSEWHERE-3", "3.13").await;
    let cc = pay::cc_token(payer, "payments").await;
    pay::wait_status(&p, payer, &cc, &returned, "RJCT").await;
    ev::wait_for("three more alerts", 20, || {
        al::of_type(&inbox, "/t", &keys, EVENT_TRANSACTION_CREATED).len() >= seen + 3
    })
    .await;
    let (all, _) = all_pages(tpp, &url, &detail).await;
    assert_eq!(all.len(), before_total + 5);
    for c in &al::of_type(&inbox, "/t", &keys, EVENT_TRANSACTION_CREATED)[seen..] {
        let a = al::body(c, EVENT_TRANSACTION_CREATED);
        let t = by_id(&all, a["TransactionId"].as_str().unwrap());
        assert_eq!(t.len(), 1, "{a}");
        assert_eq!(t[0]["Amount"], a["Amount"]);
        assert_eq!(t[0]["CreditDebitIndicator"], a["CreditDebitIndicator"]);
        for side in ["DebtorAccount", "CreditorAccount"] {
            if let Some(party) = a.get(side) {
                assert_eq!(
                    t[0][side]["Identification"], party["Identification"],
                    "{side}: {}",
                    t[0]
                );
            }
        }
    }
    let internal = all
        .iter()
        .find(|t| t["Amount"]["Amount"] == "7.00")
        .unwrap();
    assert_eq!(internal["CreditDebitIndicator"], "Credit");
    assert_eq!(
        internal["DebtorAccount"]["Identification"],
        other_acct.number.as_str()
    );
    let back: Vec<&Value> = all
        .iter()
        .filter(|t| t["Amount"]["Amount"] == "3.13")
        .collect();
    assert_eq!(back.len(), 2, "the debit and its return");
    assert_eq!(
        back[0]["CreditDebitIndicator"], "Credit",
        "the return is newer"
    );
    assert_eq!(back[0]["DebtorAccount"]["Identification"], "ELSEWHERE-3");
    assert_eq!(back[1]["CreditDebitIndicator"], "Debit");

    rx.stop().await;
    p.finish().await;
}

/// A file payment's items are postings of their own: each is a booked debit of the
/// account under its own `TransactionId` (the id its own alert carries), with its own
/// amount, payee and reference.
#[tokio::test]
async fn file_payment_items_are_transactions_of_their_own() {
    let (p, inbox, rx, keys) = with_receiver().await;
    let alice = pay::accounts_of(&p, "alice");
    let bob = pay::accounts_of(&p, "bob");
    let acct = &alice[0];
    let tpp = &p.mtls;
    al::subscribe(&p, tpp, rx.port, "/f", &[EVENT_TRANSACTION_CREATED]).await;
    let (_, detail) = al::ais_consent(&p, tpp, DETAIL, &acct.id, "2099-01-01T00:00:00Z").await;
    let url = ev::rs(&p, &format!("{AISP}/accounts/{}/transactions", acct.id));
    let before = all_pages(tpp, &url, &detail).await.0.len();
    let balance_before = pay::balance(&p, &acct.id).await;

    // Two items: one to another bank, one to bob here.
    let file = fp::json_file(&[
        fp::item("F1", "21.00", "ELSEWHERE-21", "Far Payee"),
        fp::item("F2", "2.50", &bob[0].number, "Bob"),
    ]);
    let body = fp::consent_body(
        &file,
        "UK.OBIE.PaymentInitiation.4.0",
        2,
        "23.50",
        Some(&acct.number),
    );
    let id = fp::create(&p, tpp, &body).await;
    let cc = pay::cc_token(tpp, "payments").await;
    let (s, b) = fp::upload(&p, tpp, &cc, &id, "application/json", &file, &pay::key()).await;
    assert_eq!(s, 200, "{b:?}");
    let at = fp::approve(&p, tpp, &id, None).await;
    let r = fp::execute(&p, tpp, &at, &fp::payment_body(&id, &body), &pay::key()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(pay::balance(&p, &acct.id).await, balance_before - 2350);

    // One alert per item, each with its own posting id.
    let debits = |inbox: &ev::Inbox| -> Vec<Value> {
        al::of_type(inbox, "/f", &keys, EVENT_TRANSACTION_CREATED)
            .iter()
            .map(|c| al::body(c, EVENT_TRANSACTION_CREATED).clone())
            .filter(|b| b["AccountId"] == acct.id.as_str() && b["CreditDebitIndicator"] == "Debit")
            .collect()
    };
    ev::wait_for("an alert per item", 20, || debits(&inbox).len() >= 2).await;
    let alerts = debits(&inbox);
    let ids: HashSet<&str> = alerts
        .iter()
        .map(|b| b["TransactionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{alerts:?}");

    let (all, _) = all_pages(tpp, &url, &detail).await;
    assert_eq!(all.len(), before + 2);
    for (amount, payee, reference) in [
        ("21.00", "ELSEWHERE-21", "REF-F1"),
        ("2.50", bob[0].number.as_str(), "REF-F2"),
    ] {
        let a = alerts
            .iter()
            .find(|b| b["Amount"]["Amount"] == amount)
            .unwrap_or_else(|| panic!("an alert of {amount}: {alerts:?}"));
        let t = by_id(&all, a["TransactionId"].as_str().unwrap());
        assert_eq!(t.len(), 1, "{amount}: {all:?}");
        assert_eq!(t[0]["CreditDebitIndicator"], "Debit");
        assert_eq!(t[0]["Status"], "BOOK");
        assert_eq!(t[0]["Amount"]["Amount"], amount);
        assert_eq!(t[0]["TransactionReference"], reference);
        assert_eq!(t[0]["CreditorAccount"]["Identification"], payee);
    }
    rx.stop().await;
    p.finish().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
