//! Transaction alerts, balance thresholds, incoming credits, the consent expiry sweep and
//! event retention (issue 8, ADR 0018), end to end: TPPs subscribe over mTLS, customers
//! authorise account-access consents in the browser flow, money moves through real
//! payments and the sandbox's incoming-transfer endpoint, and the SETs arrive at a real
//! HTTPS receiver (the one of `events`), each verified against the published JWKS.

#![allow(clippy::inconsistent_digit_grouping)] // minor units written as major_minor

use crate::events as ev;
use crate::payments as pay;
use authz_server::clock::Clock;
use authz_store::{EVENT_BALANCE_THRESHOLD, EVENT_RESOURCE_UPDATE, EVENT_TRANSACTION_CREATED};
use fapi_conformance::{Pkce, Tpp};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use wekeza_tests::{TestPlatform, query_param};

const AISP: &str = "/open-banking/v4.0/aisp";
const EVENTS: &str = "/open-banking/v4.0/events";
const INCOMING: &str = "/open-banking/v4.0/sandbox/incoming-transfers";

pub(crate) async fn spawn() -> TestPlatform {
    TestPlatform::spawn_with(|c| {
        c.events_retry_base_ms = 100;
        c.events_poll_interval_ms = 50;
        c.events_delivery_timeout_ms = 2000;
        c.events_housekeeping_interval_ms = 100;
    })
    .await
}

/// The `private_key_jwt` sandbox client with assertions dated by the server's clock
/// (which the tests move forward for fresh TOTP codes).
async fn synced_pkjwt(p: &TestPlatform) -> Tpp {
    let mut t = Tpp::from_kit(&p.kit, p.kit.client("private_key_jwt").unwrap())
        .await
        .unwrap();
    let c = p.clock.clone();
    t.clock = Arc::new(move || c.now());
    t
}

/// A subscription of `tpp` for `types` (empty = all) delivering to `path` on the receiver.
pub(crate) async fn subscribe(
    p: &TestPlatform,
    tpp: &Tpp,
    port: u16,
    path: &str,
    types: &[&str],
) -> String {
    let mut data =
        json!({"Version": "4.0", "CallbackUrl": format!("https://localhost:{port}{path}")});
    if !types.is_empty() {
        data["EventTypes"] = json!(types);
    }
    let r = ev::call(
        tpp,
        Method::POST,
        &ev::rs(p, &format!("{EVENTS}/event-subscriptions")),
        Some(&json!({ "Data": data })),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["Data"]["EventSubscriptionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An account-access consent of `tpp` with `permissions`, authorised by the sandbox
/// customer for `account`: (consent id, the customer's access token).
pub(crate) async fn ais_consent(
    p: &TestPlatform,
    tpp: &Tpp,
    permissions: &[&str],
    account: &str,
    expires: &str,
) -> (String, String) {
    let body = json!({
        "Data": {"Permissions": permissions, "ExpirationDateTime": expires},
        "Risk": {}
    });
    let r = ev::call(
        tpp,
        Method::POST,
        &ev::rs(p, &format!("{AISP}/account-access-consents")),
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    let claims = json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}})
        .to_string();
    let pkce = Pkce::new();
    let extra = [("scope", "openid accounts"), ("claims", claims.as_str())];
    let par = if tpp.uses_dpop() {
        tpp.par_dpop(&pkce, "st-al", "n-al", &extra).await.unwrap()
    } else {
        tpp.par(&pkce, "st-al", "n-al", &extra).await.unwrap()
    };
    assert_eq!(par.status, 201, "{:?}", par.body);
    let agent = p.customer();
    let login = agent
        .open(&tpp.authorize_url(par.str("request_uri").unwrap()))
        .await
        .unwrap();
    let c = &p.kit.customer;
    let otp = p.fresh_otp();
    let page = agent
        .sign_in(&login, &c.username, &c.password, &otp)
        .await
        .unwrap();
    let back = agent
        .decide_accounts(&page, true, &[account])
        .await
        .unwrap();
    let code = query_param(&back, "code").expect("code");
    let t = if tpp.uses_dpop() {
        tpp.exchange_code_dpop(&code, &pkce).await.unwrap()
    } else {
        tpp.exchange_code(&code, &pkce).await.unwrap()
    };
    assert_eq!(t.status, 200, "{:?}", t.body);
    (id, t.str("access_token").unwrap().to_owned())
}

/// Money from outside the bank, through the sandbox tool (any sandbox client's
/// client-credentials token).
pub(crate) async fn incoming(
    p: &TestPlatform,
    account: &str,
    amount: &str,
    from: &str,
    reference: &str,
) {
    let r = ev::call(
        &p.mtls,
        Method::POST,
        &ev::rs(p, INCOMING),
        Some(&json!({"Data": {
            "AccountId": account,
            "InstructedAmount": {"Amount": amount, "Currency": "KES"},
            "Debtor": {"Name": from, "SchemeName": "KE.OTHERBANK.AccountNumber", "Identification": "99887766"},
            "Reference": reference
        }})),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

/// A payment of `amount` from `from` to account number `to`, made by `tpp`; its id.
pub(crate) async fn pay_out(
    p: &TestPlatform,
    tpp: &Tpp,
    from: &pay::Acct,
    to: &str,
    amount: &str,
) -> String {
    let body = pay::consent_body(amount, to, Some(&from.number));
    let cid = pay::create_consent(p, tpp, &body).await;
    let t = pay::authorise(p, tpp, &cid, None).await;
    let at = t.str("access_token").unwrap().to_owned();
    let r = pay::call(
        tpp,
        Method::POST,
        &pay::url(p, "/domestic-payments"),
        &at,
        Some(&pay::payment_body(&cid, &body)),
        Some(&pay::key()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["Data"]["DomesticPaymentId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The verified claims of every event at `path` of type `ty`, in arrival order. Delivery
/// is at-least-once (ADR 0012): a SET the receiver got but answered too late for the
/// sender arrives again with the same `jti`, so events are counted once per `jti` here;
/// [`assert_arrivals_match_the_log`] checks that such repeats are identical.
pub(crate) fn of_type(
    inbox: &ev::Inbox,
    path: &str,
    keys: &[fapi_jose::Jwk],
    ty: &str,
) -> Vec<Value> {
    let mut seen = HashSet::new();
    inbox
        .sets(path)
        .iter()
        .map(|s| ev::verified(s, keys))
        .filter(|c| ev::event_type(c) == ty)
        .filter(|c| seen.insert(c["jti"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// (event id, state) of every delivery a subscription's log lists.
async fn delivery_log(p: &TestPlatform, tpp: &Tpp, sub: &str) -> Vec<(String, String)> {
    let r = ev::call(
        tpp,
        Method::GET,
        &ev::rs(p, &format!("{EVENTS}/event-subscriptions/{sub}/deliveries")),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["Data"]["Deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["EventId"].as_str().unwrap().to_owned(),
                d["State"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// What a receiver can rely on under at-least-once delivery, once the subscription's
/// queue has drained: every SET that arrives more than once under a `jti` is the same SET
/// (identical claims), the distinct `jti`s that arrived are exactly the deliveries the
/// log shows delivered (nothing lost, nothing invented), and no two distinct events
/// announce the same transaction.
async fn assert_arrivals_match_the_log(
    p: &TestPlatform,
    tpp: &Tpp,
    sub: &str,
    inbox: &ev::Inbox,
    path: &str,
    keys: &[fapi_jose::Jwk],
) {
    let mut log = delivery_log(p, tpp, sub).await;
    for _ in 0..200 {
        if log.iter().all(|(_, st)| st != "pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        log = delivery_log(p, tpp, sub).await;
    }
    assert!(
        log.iter().all(|(_, st)| st != "pending"),
        "{path}: queue drained: {log:?}"
    );
    let mut by_jti: std::collections::HashMap<String, Value> = Default::default();
    for c in inbox.sets(path).iter().map(|s| ev::verified(s, keys)) {
        let jti = c["jti"].as_str().unwrap().to_owned();
        if let Some(first) = by_jti.get(&jti) {
            assert_eq!(first, &c, "{path}: a repeated jti carries the same SET");
        } else {
            by_jti.insert(jti, c);
        }
    }
    let arrived: HashSet<&str> = by_jti.keys().map(String::as_str).collect();
    let delivered: HashSet<&str> = log
        .iter()
        .filter(|(_, st)| st == "delivered")
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(arrived, delivered, "{path}: every delivered event arrived");
    let txns: Vec<&str> = by_jti
        .values()
        .filter(|c| ev::event_type(c) == EVENT_TRANSACTION_CREATED)
        .map(|c| {
            body(c, EVENT_TRANSACTION_CREATED)["TransactionId"]
                .as_str()
                .unwrap()
        })
        .collect();
    let unique: HashSet<&str> = txns.iter().copied().collect();
    assert_eq!(
        unique.len(),
        txns.len(),
        "{path}: one event per transaction"
    );
}

pub(crate) fn body<'a>(c: &'a Value, ty: &str) -> &'a Value {
    &c["events"][ty]
}

/// Event types of the deliveries a subscription's log lists (every delivery ever
/// written for it, whatever its state).
async fn logged_types(p: &TestPlatform, tpp: &Tpp, sub: &str) -> Vec<String> {
    let r = ev::call(
        tpp,
        Method::GET,
        &ev::rs(p, &format!("{EVENTS}/event-subscriptions/{sub}/deliveries")),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["Data"]["Deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["EventType"].as_str().unwrap().to_owned())
        .collect()
}

fn count(types: &[String], ty: &str) -> usize {
    types.iter().filter(|t| *t == ty).count()
}

#[tokio::test]
async fn transaction_alerts_follow_the_consent_and_stop_with_it() {
    let p = spawn().await;
    let inbox = Arc::new(ev::Inbox::default());
    let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
    let keys = ev::published_keys(&p).await;
    let alice = pay::accounts_of(&p, "alice");
    let (acct, other_acct) = (&alice[0], &alice[1]);
    // A: Detail, credits and debits. B: Basic, credits only. C: subscribed, no consent
    // on the account (it makes the payments).
    let b = synced_pkjwt(&p).await;
    let (a, b, c) = (&p.mtls, &b, &p.dpop);
    let sub_a = subscribe(&p, a, rx.port, "/a", &[]).await;
    let sub_b = subscribe(&p, b, rx.port, "/b", &[EVENT_TRANSACTION_CREATED]).await;
    let sub_c = subscribe(&p, c, rx.port, "/c", &[]).await;
    let far = "2099-01-01T00:00:00Z";
    let (consent_a, _) = ais_consent(
        &p,
        a,
        &[
            "ReadAccountsDetail",
            "ReadTransactionsDetail",
            "ReadTransactionsCredits",
            "ReadTransactionsDebits",
        ],
        &acct.id,
        far,
    )
    .await;
    ais_consent(
        &p,
        b,
        &[
            "ReadAccountsBasic",
            "ReadTransactionsBasic",
            "ReadTransactionsCredits",
        ],
        &acct.id,
        far,
    )
    .await;

    // 1. A debit: a payment to another bank from the consented account.
    pay_out(&p, c, acct, "ELSEWHERE-1", "10.00").await;
    ev::wait_for("A's debit alert", 20, || {
        !of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED).is_empty()
    })
    .await;
    let got = of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED);
    let d = body(&got[0], EVENT_TRANSACTION_CREATED);
    assert_eq!(got[0]["aud"], a.client_id.as_str());
    assert_eq!(d["AccountId"], acct.id.as_str());
    assert_eq!(d["CreditDebitIndicator"], "Debit");
    assert_eq!(d["Amount"], json!({"Amount": "10.00", "Currency": "KES"}));
    assert_eq!(d["Status"], "Booked");
    assert!(d["BookingDateTime"].as_str().unwrap().ends_with('Z'), "{d}");
    // Detail: the counterparty and the reference.
    assert_eq!(d["CreditorAccount"]["Name"], "Bob's Shop");
    assert_eq!(d["CreditorAccount"]["Identification"], "ELSEWHERE-1");
    assert_eq!(d["TransactionReference"], "INV-2026-001");
    assert_eq!(
        d["subject"]["http://openbanking.org.uk/rid"],
        d["TransactionId"]
    );

    // 2. An incoming credit: A (Detail) sees the sender, B (Basic, credits) only the
    // amount; B never got the debit (credits only).
    incoming(&p, &acct.id, "25.50", "Carol Wanjiru", "RENT NOV").await;
    ev::wait_for("A's and B's credit alerts", 20, || {
        of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED).len() >= 2
            && !of_type(&inbox, "/b", &keys, EVENT_TRANSACTION_CREATED).is_empty()
    })
    .await;
    let got = of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED);
    let d = body(&got[1], EVENT_TRANSACTION_CREATED);
    assert_eq!(d["CreditDebitIndicator"], "Credit");
    assert_eq!(d["Amount"]["Amount"], "25.50");
    assert_eq!(d["DebtorAccount"]["Name"], "Carol Wanjiru");
    assert_eq!(d["DebtorAccount"]["Identification"], "99887766");
    assert_eq!(d["TransactionReference"], "RENT NOV");
    let got_b = of_type(&inbox, "/b", &keys, EVENT_TRANSACTION_CREATED);
    assert_eq!(got_b.len(), 1, "credits only: no debit alert: {got_b:?}");
    let d = body(&got_b[0], EVENT_TRANSACTION_CREATED);
    assert_eq!(got_b[0]["aud"], b.client_id.as_str());
    assert_eq!(d["CreditDebitIndicator"], "Credit");
    assert_eq!(d["Amount"]["Amount"], "25.50");
    for hidden in ["DebtorAccount", "CreditorAccount", "TransactionReference"] {
        assert!(d.get(hidden).is_none(), "Basic shows no {hidden}: {d}");
    }

    // 3. A payment between two of the customer's accounts: the credit to the consented
    // account alerts A with the debtor; the debit of the other account (not in the
    // consent) alerts nobody.
    pay_out(&p, c, other_acct, &acct.number, "7.00").await;
    ev::wait_for("the internal credit", 20, || {
        of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED).len() >= 3
            && of_type(&inbox, "/b", &keys, EVENT_TRANSACTION_CREATED).len() >= 2
    })
    .await;
    let got = of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED);
    let d = body(&got[2], EVENT_TRANSACTION_CREATED);
    assert_eq!(d["AccountId"], acct.id.as_str());
    assert_eq!(d["CreditDebitIndicator"], "Credit");
    assert_eq!(d["Amount"]["Amount"], "7.00");
    assert_eq!(
        d["DebtorAccount"]["Identification"],
        other_acct.number.as_str()
    );
    assert!(
        got.iter()
            .all(|c| body(c, EVENT_TRANSACTION_CREATED)["AccountId"] == acct.id.as_str()),
        "only the consented account: {got:?}"
    );

    // 3b. A payment the other bank refuses (sandbox: minor units ending in 13): the debit,
    // then, when the clearing returns it, the credit back — written by the clearing step's
    // own transaction. A sees both, B (credits only) the return.
    let returned = pay_out(&p, c, acct, "ELSEWHERE-3", "3.13").await;
    let cc = pay::cc_token(c, "payments").await;
    pay::wait_status(&p, c, &cc, &returned, "RJCT").await;
    ev::wait_for("the return's alerts", 20, || {
        of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED).len() >= 5
            && of_type(&inbox, "/b", &keys, EVENT_TRANSACTION_CREATED).len() >= 3
    })
    .await;
    let got = of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED);
    let (out, back) = (
        body(&got[3], EVENT_TRANSACTION_CREATED),
        body(&got[4], EVENT_TRANSACTION_CREATED),
    );
    assert_eq!(out["CreditDebitIndicator"], "Debit");
    assert_eq!(back["CreditDebitIndicator"], "Credit");
    assert_eq!(back["Amount"]["Amount"], "3.13");
    assert_eq!(back["DebtorAccount"]["Identification"], "ELSEWHERE-3");
    assert_ne!(out["TransactionId"], back["TransactionId"]);
    let got_b = of_type(&inbox, "/b", &keys, EVENT_TRANSACTION_CREATED);
    assert_eq!(
        body(&got_b[2], EVENT_TRANSACTION_CREATED)["CreditDebitIndicator"],
        "Credit"
    );

    // 4. A revokes its consent: the next credit alerts B only, and nothing for A is even
    // written (its delivery log has no further transaction alert).
    let del = ev::call(
        a,
        Method::DELETE,
        &ev::rs(&p, &format!("{AISP}/account-access-consents/{consent_a}")),
        None,
    )
    .await;
    assert_eq!(del.status, 204, "{:?}", del.body);
    incoming(&p, &acct.id, "1.00", "Dan", "AFTER").await;
    ev::wait_for("B's alert after A's revocation", 20, || {
        of_type(&inbox, "/b", &keys, EVENT_TRANSACTION_CREATED).len() >= 4
    })
    .await;
    let logged = logged_types(&p, a, &sub_a).await;
    assert_eq!(count(&logged, EVENT_TRANSACTION_CREATED), 5, "{logged:?}");
    // Several dispatcher rounds for anything wrongly queued to go out.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        of_type(&inbox, "/a", &keys, EVENT_TRANSACTION_CREATED).len(),
        5
    );

    // C has a subscription but no consent on the account: its own payment events, no
    // transaction alert, nothing in its log either.
    assert!(of_type(&inbox, "/c", &keys, EVENT_TRANSACTION_CREATED).is_empty());
    assert_eq!(
        count(
            &logged_types(&p, c, &sub_c).await,
            EVENT_TRANSACTION_CREATED
        ),
        0
    );
    assert!(!of_type(&inbox, "/c", &keys, EVENT_RESOURCE_UPDATE).is_empty());
    // B asked for transaction alerts only.
    let b_all: Vec<Value> = inbox
        .sets("/b")
        .iter()
        .map(|s| ev::verified(s, &keys))
        .collect();
    assert!(
        b_all
            .iter()
            .all(|c| ev::event_type(c) == EVENT_TRANSACTION_CREATED)
    );
    assert_eq!(
        count(
            &logged_types(&p, b, &sub_b).await,
            EVENT_TRANSACTION_CREATED
        ),
        4
    );
    // Every event arrived, and an event that arrived twice (at-least-once) was the same SET.
    for (tpp, sub, path) in [(a, &sub_a, "/a"), (b, &sub_b, "/b"), (c, &sub_c, "/c")] {
        assert_arrivals_match_the_log(&p, tpp, sub, &inbox, path, &keys).await;
    }
    rx.stop().await;
    p.finish().await;
}

fn thresholds_url(p: &TestPlatform, account: &str) -> String {
    ev::rs(p, &format!("{EVENTS}/balance-thresholds/{account}"))
}

fn error_code(r: &wekeza_tests::Reply) -> &str {
    r.body["Errors"][0]["ErrorCode"]
        .as_str()
        .unwrap_or_default()
}

fn kes(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[tokio::test]
async fn balance_thresholds_fire_once_per_crossing() {
    let p = spawn().await;
    let inbox = Arc::new(ev::Inbox::default());
    let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
    let keys = ev::published_keys(&p).await;
    let alice = pay::accounts_of(&p, "alice");
    let acct = &alice[0];
    let tpp = &p.mtls;
    subscribe(&p, tpp, rx.port, "/t", &[EVENT_BALANCE_THRESHOLD]).await;
    let far = "2099-01-01T00:00:00Z";
    let (_, token) = ais_consent(
        &p,
        tpp,
        &["ReadAccountsBasic", "ReadBalances"],
        &acct.id,
        far,
    )
    .await;
    let url = thresholds_url(&p, &acct.id);
    let put = |body: Value| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            tpp.resource(Method::PUT, &url, &token, Some(&body))
                .await
                .unwrap()
        }
    };
    let one = |amount: &str| json!({"Data": {"Thresholds": [{"Amount": {"Amount": amount, "Currency": "KES"}}]}});

    // Refused, OB-shaped: another currency, too many decimals, none, duplicates, an
    // unknown field; an account outside the consent; a consent without ReadBalances.
    for (bad, path) in [
        (
            json!({"Data": {"Thresholds": [{"Amount": {"Amount": "10.00", "Currency": "GBP"}}]}}),
            "Data.Thresholds[0].Amount.Currency",
        ),
        (one("10.001"), "Data.Thresholds[0].Amount.Amount"),
        (json!({"Data": {"Thresholds": []}}), "Data.Thresholds"),
        (
            json!({"Data": {"Thresholds": [{"Amount": {"Amount": "1.00", "Currency": "KES"}}, {"Amount": {"Amount": "1.0", "Currency": "KES"}}]}}),
            "Data.Thresholds[1]",
        ),
    ] {
        let r = put(bad).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert_eq!(error_code(&r), "UK.OBIE.Field.Invalid", "{:?}", r.body);
        assert_eq!(r.body["Errors"][0]["Path"], path, "{:?}", r.body);
    }
    let r = put(json!({"Data": {"Thresholds": [], "Extra": 1}})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = tpp
        .resource(
            Method::PUT,
            &thresholds_url(&p, &alice[1].id),
            &token,
            Some(&one("1.00")),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{:?}", r.body);
    let (_, no_balances) = ais_consent(&p, tpp, &["ReadAccountsBasic"], &acct.id, far).await;
    let r = tpp
        .resource(Method::PUT, &url, &no_balances, Some(&one("1.00")))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{:?}", r.body);

    // A threshold 100.00 above the balance: credits of 30 and 30 stay below it, 50
    // crosses it (one event), 10 more stays above (none).
    let start = pay::balance(&p, &acct.id).await;
    let level = start + 100_00;
    let r = put(one(&kes(level))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let g = tpp.resource(Method::GET, &url, &token, None).await.unwrap();
    assert_eq!(g.status, 200);
    assert_eq!(
        g.body["Data"]["Thresholds"],
        json!([{"Amount": {"Amount": kes(level), "Currency": "KES"}, "CreditDebitIndicator": "Credit"}])
    );
    for amount in ["30.00", "30.00", "50.00", "10.00"] {
        incoming(&p, &acct.id, amount, "Erin", "TOPUP").await;
    }
    ev::wait_for("the upward crossing", 20, || {
        !of_type(&inbox, "/t", &keys, EVENT_BALANCE_THRESHOLD).is_empty()
    })
    .await;
    // Back down: a payment of 25.00 takes the balance from start + 120 to start + 95,
    // under the level: one event the other way.
    pay_out(&p, &p.dpop, acct, "ELSEWHERE-2", "25.00").await;
    ev::wait_for("the downward crossing", 20, || {
        of_type(&inbox, "/t", &keys, EVENT_BALANCE_THRESHOLD).len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = of_type(&inbox, "/t", &keys, EVENT_BALANCE_THRESHOLD);
    assert_eq!(got.len(), 2, "one event per crossing: {got:?}");
    let up = body(&got[0], EVENT_BALANCE_THRESHOLD);
    assert_eq!(up["Direction"], "Above");
    assert_eq!(up["AccountId"], acct.id.as_str());
    assert_eq!(up["Threshold"]["Amount"]["Amount"], kes(level).as_str());
    assert_eq!(
        up["Balance"]["Amount"]["Amount"],
        kes(start + 110_00).as_str()
    );
    let down = body(&got[1], EVENT_BALANCE_THRESHOLD);
    assert_eq!(down["Direction"], "Below");
    assert_eq!(
        down["Balance"]["Amount"]["Amount"],
        kes(start + 95_00).as_str()
    );
    for c in &got {
        assert_eq!(c["aud"], tpp.client_id.as_str());
    }

    // Concurrent postings: a level 35.00 above the balance and eight credits of 10.00 at
    // once. Whatever order they commit in, exactly one of them crosses it.
    let now = pay::balance(&p, &acct.id).await;
    let level2 = now + 35_00;
    let r = put(one(&kes(level2))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    futures::future::join_all((0..8).map(|_| incoming(&p, &acct.id, "10.00", "Fay", "BURST")))
        .await;
    assert_eq!(pay::balance(&p, &acct.id).await, now + 80_00);
    ev::wait_for("the concurrent crossing", 20, || {
        of_type(&inbox, "/t", &keys, EVENT_BALANCE_THRESHOLD).len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = of_type(&inbox, "/t", &keys, EVENT_BALANCE_THRESHOLD);
    assert_eq!(got.len(), 3, "{got:?}");
    let c = body(&got[2], EVENT_BALANCE_THRESHOLD);
    assert_eq!(c["Direction"], "Above");
    assert_eq!(c["Threshold"]["Amount"]["Amount"], kes(level2).as_str());
    assert_eq!(c["Balance"]["Amount"]["Amount"], kes(now + 40_00).as_str());

    // Removed: no more events.
    let d = tpp
        .resource(Method::DELETE, &url, &token, None)
        .await
        .unwrap();
    assert_eq!(d.status, 204);
    let g = tpp.resource(Method::GET, &url, &token, None).await.unwrap();
    assert_eq!(g.body["Data"]["Thresholds"], json!([]));
    rx.stop().await;
    p.finish().await;
}

#[tokio::test]
async fn expired_consents_are_swept_once_by_racing_sweepers() {
    // The platform's own sweeper runs every 100 ms; two more race it from here.
    let p = spawn().await;
    let inbox = Arc::new(ev::Inbox::default());
    let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
    let keys = ev::published_keys(&p).await;
    let tpp = &p.mtls;
    let sub = subscribe(&p, tpp, rx.port, "/e", &[EVENT_RESOURCE_UPDATE]).await;
    let alice = pay::accounts_of(&p, "alice");
    let expiry = time::OffsetDateTime::from_unix_timestamp(p.clock.now() + 3600)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (id, _) = ais_consent(&p, tpp, &["ReadBalances"], &alice[0].id, &expiry).await;
    ev::wait_for("the AUTH event", 20, || inbox.sets("/e").len() == 1).await;

    let cfg = &p.state().config;
    let connect =
        || authz_store::SqlStore::connect(&cfg.database_url, cfg.database_schema.as_deref());
    let (s1, s2) = (connect().await.unwrap(), connect().await.unwrap());
    p.clock.advance(2 * 3600);
    let now = time::OffsetDateTime::from_unix_timestamp(p.clock.now()).unwrap();
    let (m1, m2) = tokio::join!(
        resource_server::alerts::sweep_expired(&s1, now),
        resource_server::alerts::sweep_expired(&s2, now)
    );
    assert!(m1.unwrap() + m2.unwrap() <= 1, "one sweeper moves it");
    ev::wait_for("the EXPD event", 20, || inbox.sets("/e").len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got: Vec<Value> = inbox
        .sets("/e")
        .iter()
        .map(|s| ev::verified(s, &keys))
        .collect();
    assert_eq!(got.len(), 2, "authorised, then expired once: {got:?}");
    let subject = &got[1]["events"][EVENT_RESOURCE_UPDATE]["subject"];
    assert_eq!(subject["http://openbanking.org.uk/rid"], id.as_str());
    assert_eq!(logged_types(&p, tpp, &sub).await.len(), 2);
    // Nobody read the consent: the sweep moved it.
    let r = ev::call(
        tpp,
        Method::GET,
        &ev::rs(&p, &format!("{AISP}/account-access-consents/{id}")),
        None,
    )
    .await;
    assert_eq!(r.body["Data"]["Status"], "EXPD", "{:?}", r.body);
    assert_eq!(
        r.body["Data"]["StatusReason"][0]["StatusReasonCode"], "TKXP",
        "{:?}",
        r.body
    );
    rx.stop().await;
    p.finish().await;
}

#[tokio::test]
async fn retention_deletes_only_old_finished_deliveries() {
    let p = spawn().await;
    let inbox = Arc::new(ev::Inbox::default());
    let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
    let tpp = &p.mtls;
    let sub = subscribe(&p, tpp, rx.port, "/r", &[]).await;
    let log = |p: &TestPlatform| {
        let url = ev::rs(p, &format!("{EVENTS}/event-subscriptions/{sub}/deliveries"));
        async move { ev::call(tpp, Method::GET, &url, None).await.body["Data"].clone() }
    };
    let old = ev::create_intent(&p, tpp).await;
    ev::authorise(&p, tpp, &old).await;
    ev::wait_for("the old event", 20, || inbox.sets("/r").len() == 1).await;
    let before = log(&p).await;
    assert_eq!(
        before["Deliveries"].as_array().unwrap().len(),
        1,
        "{before}"
    );
    assert_eq!(before["Deliveries"][0]["State"], "delivered");
    let old_event = before["Deliveries"][0]["EventId"]
        .as_str()
        .unwrap()
        .to_owned();

    // 31 days on, a new event: the retention period (30 days) removes the old delivery
    // and its log, never the new one.
    p.clock.advance(31 * 24 * 3600);
    let new = ev::create_intent(&p, tpp).await;
    ev::authorise(&p, tpp, &new).await;
    ev::wait_for("the new event", 20, || inbox.sets("/r").len() == 2).await;
    let mut after = Value::Null;
    for _ in 0..100 {
        after = log(&p).await;
        let ids: Vec<&str> = after["Deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["EventId"].as_str().unwrap())
            .collect();
        if !ids.contains(&old_event.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries = after["Deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{after}");
    assert_ne!(deliveries[0]["EventId"], old_event.as_str());
    assert_eq!(deliveries[0]["State"], "delivered");
    let attempts = after["Attempts"].as_array().unwrap();
    assert!(!attempts.is_empty());
    assert!(
        attempts.iter().all(|a| a["EventId"] != old_event.as_str()),
        "{after}"
    );
    rx.stop().await;
    p.finish().await;
}

#[tokio::test]
async fn incoming_transfers_are_sandbox_only_and_validated() {
    let p = spawn().await;
    let alice = pay::accounts_of(&p, "alice");
    let url = ev::rs(&p, INCOMING);
    let send = |data: Value| {
        let url = url.clone();
        let p = &p;
        async move { ev::call(&p.mtls, Method::POST, &url, Some(&json!({ "Data": data }))).await }
    };
    let ok = json!({"AccountId": alice[0].id, "InstructedAmount": {"Amount": "5.00", "Currency": "KES"}, "Debtor": {"Name": "Gus"}});
    let before = pay::balance(&p, &alice[0].id).await;
    let r = send(ok.clone()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["InstructedAmount"]["Amount"], "5.00");
    assert_eq!(pay::balance(&p, &alice[0].id).await, before + 5_00);
    let mut bad = ok.clone();
    bad["InstructedAmount"]["Currency"] = json!("GBP");
    let r = send(bad).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        r.body["Errors"][0]["Path"],
        "Data.InstructedAmount.Currency"
    );
    let mut bad = ok.clone();
    bad["AccountId"] = json!("no-such-account");
    let r = send(bad).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(error_code(&r), "UK.OBIE.Resource.NotFound");
    let mut bad = ok.clone();
    bad["InstructedAmount"]["Amount"] = json!("0.00");
    assert_eq!(send(bad).await.status, 400);
    let mut bad = ok.clone();
    bad["Debtor"]["Name"] = json!("");
    assert_eq!(send(bad).await.status, 400);
    // No token: refused before anything moves.
    let anon = p
        .mtls
        .resource(
            Method::POST,
            &url,
            "not-a-token",
            Some(&json!({ "Data": ok })),
        )
        .await
        .unwrap();
    assert_eq!(anon.status, 401);
    assert_eq!(pay::balance(&p, &alice[0].id).await, before + 5_00);
    p.finish().await;
}
