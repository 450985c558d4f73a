//! File (bulk) payments end to end (issue 7, ADR 0016): a TPP creates a file-payment
//! consent, uploads the file (JSON batch or CSV), the customer authorises the whole batch
//! once on the consent page, the TPP executes it with the token bound to that consent and
//! reads each item's outcome; every rule refused with an explained error and nothing
//! stored; concurrent submissions execute the file once.

#![allow(clippy::inconsistent_digit_grouping)] // minor units written as major_minor

use crate::payments::{Acct, accounts_of, balance, call, cc_token, key, ledger, url};
use base64::Engine;
use fapi_conformance::browser::{Customer, Page};
use fapi_conformance::{Pkce, Tpp};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wekeza_tests::journey::{self, Ask};
use wekeza_tests::{Reply, TestPlatform, query_param};

const SCHEME: &str = "KE.WEKEZA.AccountNumber";
pub(crate) const JSON_TYPE: &str = "UK.OBIE.PaymentInitiation.4.0";
const CSV_TYPE: &str = "KE.WEKEZA.PaymentInitiation.CSV.1";
const CSV_HEADER: &str = "InstructionIdentification,EndToEndIdentification,Amount,Currency,CreditorSchemeName,CreditorIdentification,CreditorName,Reference,Unstructured";

fn hash(file: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(file))
}

pub(crate) fn item(id: &str, amount: &str, creditor: &str, name: &str) -> Value {
    json!({
        "InstructionIdentification": id,
        "EndToEndIdentification": format!("E2E-{id}"),
        "InstructedAmount": {"Amount": amount, "Currency": "KES"},
        "CreditorAccount": {"SchemeName": SCHEME, "Identification": creditor, "Name": name},
        "RemittanceInformation": {"Reference": format!("REF-{id}")}
    })
}

pub(crate) fn json_file(items: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"Data": {"DomesticPayments": items}})).unwrap()
}

pub(crate) fn consent_body(
    file: &[u8],
    ty: &str,
    n: usize,
    sum: &str,
    debtor: Option<&str>,
) -> Value {
    let mut b = json!({"Data": {"Initiation": {
        "FileType": ty,
        "FileHash": hash(file),
        "FileReference": "PAYROLL-NOV",
        "NumberOfTransactions": n.to_string(),
        "ControlSum": sum,
    }}});
    if let Some(d) = debtor {
        b["Data"]["Initiation"]["DebtorAccount"] =
            json!({"SchemeName": SCHEME, "Identification": d});
    }
    b
}

fn code(r: &Reply) -> String {
    r.body["Errors"][0]["ErrorCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn path(r: &Reply) -> String {
    r.body["Errors"][0]["Path"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub(crate) async fn create(p: &TestPlatform, tpp: &Tpp, body: &Value) -> String {
    let cc = cc_token(tpp, "payments").await;
    let r = call(
        tpp,
        Method::POST,
        &url(p, "/file-payment-consents"),
        &cc,
        Some(body),
        Some(&key()),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "AWUP");
    r.body["Data"]["ConsentId"].as_str().unwrap().to_owned()
}

/// A raw call over the TPP's certificate (certificate-bound tokens): the file's own bytes
/// and media type, and the answer's bytes.
async fn raw(
    tpp: &Tpp,
    method: Method,
    url: &str,
    token: &str,
    body: Option<(&str, &[u8])>,
    idem: Option<&str>,
) -> (u16, String, Vec<u8>) {
    // Signed as a TPP signs: over the exact bytes sent (x-jws-signature, ADR 0017).
    let sig = body.and_then(|(_, b)| tpp.jws_signature(b));
    raw_signed(tpp, method, url, token, body, idem, sig.as_deref()).await
}

/// [`raw`] with the `x-jws-signature` given (or none).
async fn raw_signed(
    tpp: &Tpp,
    method: Method,
    url: &str,
    token: &str,
    body: Option<(&str, &[u8])>,
    idem: Option<&str>,
    sig: Option<&str>,
) -> (u16, String, Vec<u8>) {
    assert!(
        !tpp.uses_dpop(),
        "raw calls are made with certificate-bound tokens"
    );
    let mut req = tpp
        .http
        .request(method, url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-fapi-interaction-id", fapi_conformance::tpp::uuid_like());
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b.to_vec());
    }
    if let Some(k) = idem {
        req = req.header("x-idempotency-key", k);
    }
    if let Some(sig) = sig {
        req = req.header("x-jws-signature", sig);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

pub(crate) async fn upload(
    p: &TestPlatform,
    tpp: &Tpp,
    cc: &str,
    id: &str,
    ct: &str,
    file: &[u8],
    idem: &str,
) -> (u16, Value) {
    let (s, _, b) = raw(
        tpp,
        Method::POST,
        &url(p, &format!("/file-payment-consents/{id}/file")),
        cc,
        Some((ct, file)),
        Some(idem),
    )
    .await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

pub(crate) async fn consent_status(p: &TestPlatform, tpp: &Tpp, cc: &str, id: &str) -> String {
    let r = call(
        tpp,
        Method::GET,
        &url(p, &format!("/file-payment-consents/{id}")),
        cc,
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["Data"]["Status"].as_str().unwrap().to_owned()
}

async fn par(tpp: &Tpp, pkce: &Pkce, id: &str) -> Reply {
    journey::par(tpp, pkce, Ask::Intent(id), "openid payments").await
}

/// PAR for the file consent, then the customer signs in: the consent page.
async fn consent_page(p: &TestPlatform, tpp: &Tpp, pkce: &Pkce, id: &str) -> (Customer, Page) {
    let (customer, page) = journey::consent_page(p, tpp, pkce, Ask::Intent(id)).await;
    assert_eq!(page.status, 200, "{}", page.html);
    (customer, page)
}

/// The customer approves file consent `id`, paying from `from` when asked: the access token.
pub(crate) async fn approve(p: &TestPlatform, tpp: &Tpp, id: &str, from: Option<&str>) -> String {
    let t = journey::approve(p, tpp, Ask::Intent(id), from).await;
    t.str("access_token").unwrap().to_owned()
}

async fn token(tpp: &Tpp, back: &url::Url, pkce: &Pkce) -> String {
    let t = journey::exchange(tpp, back, pkce).await;
    t.str("access_token").unwrap().to_owned()
}

pub(crate) fn payment_body(id: &str, consent: &Value) -> Value {
    let mut b = consent.clone();
    b["Data"]["ConsentId"] = json!(id);
    b
}

pub(crate) async fn execute(p: &TestPlatform, tpp: &Tpp, at: &str, body: &Value, k: &str) -> Reply {
    call(
        tpp,
        Method::POST,
        &url(p, "/file-payments"),
        at,
        Some(body),
        Some(k),
    )
    .await
}

async fn get(p: &TestPlatform, tpp: &Tpp, cc: &str, path: &str) -> Reply {
    call(tpp, Method::GET, &url(p, path), cc, None, None).await
}

async fn ledger_balanced(p: &TestPlatform) {
    let check = ledger(p).ledger_check().await.unwrap();
    assert_eq!(check.entries_sum, 0, "sum of entries");
    assert!(
        check.unbalanced_postings.is_empty() && check.balance_mismatches.is_empty(),
        "{check:?}"
    );
}

fn minor(amount: &str) -> i64 {
    let (i, f) = amount.split_once('.').unwrap_or((amount, ""));
    i.parse::<i64>().unwrap() * 100 + format!("{f:0<2}").parse::<i64>().unwrap()
}

pub(crate) fn major(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

#[tokio::test]
async fn json_file_payment_end_to_end_with_per_item_outcomes() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let (from, to) = (&alice[0], &bob[0]);
    let a0 = balance(&p, &from.id).await;
    let b0 = balance(&p, &to.id).await;
    let available = ledger(&p)
        .ledger_account(&from.id)
        .await
        .unwrap()
        .unwrap()
        .available();
    // Item 2 cannot be funded (more than the account can pay): RJCT AM04, the rest move.
    let too_much = major(available + 1_00);
    let items = [
        item("PAY-1", "10.00", &to.number, "Bob's Shop"),
        item("PAY-2", &too_much, &to.number, "Bob's Shop"),
        item("PAY-3", "20.50", &to.number, "Bob's Shop"),
        item("PAY-4", "5.00", "ELSEWHERE-9", "Other Bank Ltd"),
    ];
    let sum = 10_00 + (available + 1_00) + 20_50 + 5_00;
    let file = json_file(&items);
    let body = consent_body(&file, JSON_TYPE, 4, &major(sum), None);
    // The TPP polls for its events (aggregated polling).
    let sub = crate::events::subscribe(&p, tpp, None).await;
    assert_eq!(sub.status, 201, "{:?}", sub.body);
    let id = create(&p, tpp, &body).await;
    let cc = cc_token(tpp, "payments").await;

    // Not authorisable before its file is uploaded.
    let early = par(tpp, &Pkce::new(), &id).await;
    assert_eq!(
        (early.status.as_u16(), early.error()),
        (400, "invalid_request"),
        "{:?}",
        early.body
    );
    let (s, b) = upload(&p, tpp, &cc, &id, "application/json", &file, &key()).await;
    assert_eq!(s, 200, "{b:?}");
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "AWAU");
    let (s, ct, got) = raw(
        tpp,
        Method::GET,
        &url(&p, &format!("/file-payment-consents/{id}/file")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, got.as_slice()),
        (200, file.as_slice()),
        "the file as uploaded"
    );
    assert!(ct.starts_with("application/json"), "{ct}");
    // A second upload: refused, the first file stays.
    let (s, b) = upload(&p, tpp, &cc, &id, "application/json", &file, &key()).await;
    assert_eq!(
        (s, b["Errors"][0]["ErrorCode"].as_str()),
        (400, Some("UK.OBIE.Resource.InvalidConsentStatus")),
        "{b:?}"
    );

    // The consent page: the batch, the first payees and "and 1 more", the account to pick.
    let pkce = Pkce::new();
    let (customer, page) = consent_page(&p, tpp, &pkce, &id).await;
    assert!(
        page.html.contains("id=\"file-payment-count\">4</strong>"),
        "{}",
        page.html
    );
    assert!(
        page.html.contains(&format!(
            "id=\"file-payment-total\"><strong>KES {}</strong>",
            major(sum)
        )),
        "{}",
        page.html
    );
    assert!(page.html.contains("Bob&#39;s Shop"));
    assert!(page.html.contains("id=\"file-payment-more\">and 1 more"));
    assert!(
        page.html
            .contains("id=\"file-payment-reference\">PAYROLL-NOV")
    );
    let offered = page.account_choices();
    assert!(offered.contains(&from.id), "{offered:?}");
    assert!(!offered.iter().any(|a| bob.iter().any(|b| &b.id == a)));
    // Allow without an account: asked again.
    let again = customer.post_decision(&page, true, &[]).await.unwrap();
    assert_eq!(again.status, 200);
    assert!(again.html.contains("Choose the account to pay from"));
    let back = customer
        .decide_accounts(&again, true, &[from.id.as_str()])
        .await
        .unwrap();
    let at = token(tpp, &back, &pkce).await;
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "AUTH");

    // Initiation must equal the consent's: refused, nothing moves.
    let pay = payment_body(&id, &body);
    let mut other = pay.clone();
    other["Data"]["Initiation"]["ControlSum"] = json!(major(sum + 1));
    let r = execute(&p, tpp, &at, &other, &key()).await;
    assert_eq!(
        (r.status.as_u16(), code(&r).as_str(), path(&r).as_str()),
        (
            400,
            "UK.OBIE.Resource.ConsentMismatch",
            "Data.Initiation.ControlSum"
        ),
        "{:?}",
        r.body
    );
    assert_eq!(balance(&p, &from.id).await, a0);
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "AUTH");

    let k = key();
    let r = execute(&p, tpp, &at, &pay, &k).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "ACSP", "one item is in clearing");
    assert_eq!(r.body["Data"]["Initiation"], body["Data"]["Initiation"]);
    let fid = r.body["Data"]["FilePaymentId"].as_str().unwrap().to_owned();
    let paid = 10_00 + 20_50 + 5_00;
    assert_eq!(balance(&p, &from.id).await, a0 - paid);
    assert_eq!(balance(&p, &to.id).await, b0 + 10_00 + 20_50);
    // Same key, same body: the original 201, no second effect.
    let r2 = execute(&p, tpp, &at, &pay, &k).await;
    assert_eq!(
        (
            r2.status.as_u16(),
            r2.body["Data"]["FilePaymentId"].as_str()
        ),
        (201, Some(fid.as_str()))
    );
    // Same key, another body: refused, nothing changes.
    let r3 = execute(&p, tpp, &at, &other, &k).await;
    assert_eq!(
        (r3.status.as_u16(), code(&r3).as_str()),
        (400, "UK.OBIE.Header.Invalid")
    );
    // The consent replayed with a new key: refused (COND).
    let r4 = execute(&p, tpp, &at, &pay, &key()).await;
    assert_eq!(
        (r4.status.as_u16(), code(&r4).as_str()),
        (400, "UK.OBIE.Resource.InvalidConsentStatus"),
        "{:?}",
        r4.body
    );
    assert_eq!(balance(&p, &from.id).await, a0 - paid, "paid once");
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "COND");

    // Per item: settled, refused for funds, settled, in clearing.
    let d = get(
        &p,
        tpp,
        &cc,
        &format!("/file-payments/{fid}/payment-details"),
    )
    .await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    let st: Vec<(&str, &str)> = d.body["Data"]["PaymentStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["InstructionIdentification"].as_str().unwrap(),
                s["Status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        st,
        [
            ("PAY-1", "ACSC"),
            ("PAY-2", "RJCT"),
            ("PAY-3", "ACSC"),
            ("PAY-4", "ACSP")
        ]
    );
    assert_eq!(
        d.body["Data"]["PaymentStatus"][1]["StatusReason"][0]["StatusReasonCode"],
        "AM04"
    );
    ledger_balanced(&p).await;

    // The clearing settles the external item: the file is then partially accepted.
    p.clock.advance(5);
    let mut status = String::new();
    for _ in 0..50 {
        let g = get(&p, tpp, &cc, &format!("/file-payments/{fid}")).await;
        status = g.body["Data"]["Status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status == "PART" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, "PART");
    let rep = get(&p, tpp, &cc, &format!("/file-payments/{fid}/report-file")).await;
    assert_eq!(rep.status, 200, "{:?}", rep.body);
    let lines: Vec<(String, String, String, Option<String>)> = rep.body["Data"]["Items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["InstructionIdentification"].as_str().unwrap().to_owned(),
                i["InstructedAmount"]["Amount"].as_str().unwrap().to_owned(),
                i["Status"].as_str().unwrap().to_owned(),
                i["StatusReason"]["StatusReasonCode"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("PAY-1".into(), "10.00".into(), "ACSC".into(), None),
            (
                "PAY-2".into(),
                too_much.clone(),
                "RJCT".into(),
                Some("AM04".into())
            ),
            ("PAY-3".into(), "20.50".into(), "ACSC".into(), None),
            ("PAY-4".into(), "5.00".into(), "ACSC".into(), None),
        ]
    );
    assert_eq!(rep.body["Data"]["AcceptedSum"], major(paid).as_str());
    assert_eq!(balance(&p, &from.id).await, a0 - paid);
    ledger_balanced(&p).await;

    // Events, written in the payments' transactions: the consent consumed, the file
    // payment created and changed again by the clearing; none about items as domestic
    // payments.
    let polled = crate::events::call(
        tpp,
        Method::POST,
        &crate::events::rs(&p, "/open-banking/v4.0/events"),
        Some(&json!({"maxEvents": 100})),
    )
    .await;
    assert_eq!(polled.status, 200, "{:?}", polled.body);
    let about: Vec<(String, String)> = polled.body["sets"]
        .as_object()
        .unwrap()
        .values()
        .map(|set| {
            let c = wekeza_tests::jwt_claims(set.as_str().unwrap());
            let s = &c["events"][authz_store::EVENT_RESOURCE_UPDATE]["subject"];
            (
                s["http://openbanking.org.uk/rty"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                s["http://openbanking.org.uk/rid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let count = |rty: &str, rid: &str| about.iter().filter(|(t, r)| t == rty && r == rid).count();
    assert_eq!(
        count("file-payment", &fid),
        2,
        "created, then cleared: {about:?}"
    );
    assert!(
        count("file-payment-consent", &id) >= 2,
        "authorised, consumed: {about:?}"
    );
    assert!(
        !about.iter().any(|(t, _)| t == "domestic-payment"),
        "{about:?}"
    );

    // Another TPP sees none of it; an item is not a domestic payment.
    let cc2 = cc_token(&p.pkjwt, "payments").await;
    for path in [
        format!("/file-payments/{fid}"),
        format!("/file-payments/{fid}/report-file"),
        format!("/file-payment-consents/{id}"),
        format!("/file-payment-consents/{id}/file"),
    ] {
        let r = get(&p, &p.pkjwt, &cc2, &path).await;
        assert_eq!(
            (r.status.as_u16(), code(&r).as_str()),
            (400, "UK.OBIE.Resource.NotFound"),
            "{path}"
        );
    }
    let item_id = d.body["Data"]["PaymentStatus"][0]["PaymentTransactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = get(&p, tpp, &cc, &format!("/domestic-payments/{item_id}")).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn csv_file_payment_from_a_named_account() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let (from, to): (&Acct, &Acct) = (&alice[0], &bob[0]);
    let a0 = balance(&p, &from.id).await;
    let b0 = balance(&p, &to.id).await;
    let csv = format!(
        "{CSV_HEADER}\r\n\
         SAL-1,E-SAL-1,1200.00,KES,{SCHEME},{n},\"Bob, the \"\"builder\"\"\",NOV-SALARY,November\r\n\
         SAL-2,E-SAL-2,300.5,KES,{SCHEME},{n},Bob,NOV-BONUS,\r\n",
        n = to.number
    );
    let file = csv.as_bytes();
    let body = consent_body(file, CSV_TYPE, 2, "1500.50", Some(&from.number));
    let id = create(&p, tpp, &body).await;
    let cc = cc_token(tpp, "payments").await;
    // The file goes up as text/csv, not JSON.
    let (s, b) = upload(&p, tpp, &cc, &id, "application/json", file, &key()).await;
    assert_eq!(s, 415, "{b:?}");
    let (s, b) = upload(&p, tpp, &cc, &id, "text/csv", file, &key()).await;
    assert_eq!(s, 200, "{b:?}");
    let (s, ct, got) = raw(
        tpp,
        Method::GET,
        &url(&p, &format!("/file-payment-consents/{id}/file")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!((s, got.as_slice()), (200, file));
    assert!(ct.starts_with("text/csv"), "{ct}");

    // The named account is shown, not offered.
    let pkce = Pkce::new();
    let (customer, page) = consent_page(&p, tpp, &pkce, &id).await;
    assert!(
        page.html.contains("id=\"file-payment-from\""),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("Bob, the &#34;builder&#34;"),
        "{}",
        page.html
    );
    assert!(page.html.contains("KES 1500.50"), "{}", page.html);
    assert!(!page.html.contains("file-payment-more"));
    assert!(page.account_choices().is_empty());
    let back = customer.decide_accounts(&page, true, &[]).await.unwrap();
    let at = token(tpp, &back, &pkce).await;
    let r = execute(&p, tpp, &at, &payment_body(&id, &body), &key()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "ACSC");
    let fid = r.body["Data"]["FilePaymentId"].as_str().unwrap().to_owned();
    let rep = get(&p, tpp, &cc, &format!("/file-payments/{fid}/report-file")).await;
    assert_eq!(rep.body["Data"]["Status"], "ACSC");
    assert_eq!(rep.body["Data"]["ControlSum"], "1500.50");
    assert_eq!(
        rep.body["Data"]["Items"][1]["InstructedAmount"]["Amount"],
        "300.50"
    );
    assert_eq!(balance(&p, &from.id).await, a0 - minor("1500.50"));
    assert_eq!(balance(&p, &to.id).await, b0 + minor("1500.50"));
    ledger_balanced(&p).await;
    p.finish().await;
}

#[tokio::test]
async fn file_rules_refuse_and_store_nothing() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let bob = accounts_of(&p, "bob");
    let cc = cc_token(tpp, "payments").await;
    let items = [
        item("A", "10.00", &bob[0].number, "Bob"),
        item("B", "2.50", &bob[0].number, "Bob"),
    ];
    let file = json_file(&items);
    let body = consent_body(&file, JSON_TYPE, 2, "12.50", None);
    let id = create(&p, tpp, &body).await;
    let ct = "application/json";
    let refused = |(s, b): (u16, Value)| {
        (
            s,
            b["Errors"][0]["ErrorCode"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            b["Errors"][0]["Path"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    // Hash mismatch: a file other than the one the consent names.
    let other = json_file(&[items[1].clone(), items[0].clone()]);
    assert_eq!(
        refused(upload(&p, tpp, &cc, &id, ct, &other, &key()).await),
        (
            400,
            "UK.OBIE.Resource.ConsentMismatch".into(),
            "Data.Initiation.FileHash".into()
        )
    );
    // Count and control sum must match the file (consents that declare otherwise).
    let bad_count = create(&p, tpp, &consent_body(&file, JSON_TYPE, 3, "12.50", None)).await;
    assert_eq!(
        refused(upload(&p, tpp, &cc, &bad_count, ct, &file, &key()).await),
        (
            400,
            "UK.OBIE.Resource.ConsentMismatch".into(),
            "Data.Initiation.NumberOfTransactions".into()
        )
    );
    let bad_sum = create(&p, tpp, &consent_body(&file, JSON_TYPE, 2, "12.49", None)).await;
    assert_eq!(
        refused(upload(&p, tpp, &cc, &bad_sum, ct, &file, &key()).await),
        (
            400,
            "UK.OBIE.Resource.ConsentMismatch".into(),
            "Data.Initiation.ControlSum".into()
        )
    );
    // Bad items, named by path: too many decimals for KES; an unsupported currency.
    let mut bad = items.to_vec();
    bad[1]["InstructedAmount"]["Amount"] = json!("2.505");
    let f = json_file(&bad);
    let c = create(&p, tpp, &consent_body(&f, JSON_TYPE, 2, "12.505", None)).await;
    assert_eq!(
        refused(upload(&p, tpp, &cc, &c, ct, &f, &key()).await),
        (
            400,
            "UK.OBIE.Field.Invalid".into(),
            "Data.DomesticPayments[1].InstructedAmount.Amount".into()
        )
    );
    let mut bad = items.to_vec();
    bad[0]["InstructedAmount"]["Currency"] = json!("XTS");
    let f = json_file(&bad);
    let c = create(&p, tpp, &consent_body(&f, JSON_TYPE, 2, "12.50", None)).await;
    assert_eq!(
        refused(upload(&p, tpp, &cc, &c, ct, &f, &key()).await),
        (
            400,
            "UK.OBIE.Unsupported.Currency".into(),
            "Data.DomesticPayments[0].InstructedAmount.Currency".into()
        )
    );
    let csv = format!(
        "{CSV_HEADER}\nX,E-X,1.001,KES,{SCHEME},{n},Bob,,\n",
        n = bob[0].number
    );
    let c = create(
        &p,
        tpp,
        &consent_body(csv.as_bytes(), CSV_TYPE, 1, "1.001", None),
    )
    .await;
    assert_eq!(
        refused(upload(&p, tpp, &cc, &c, "text/csv", csv.as_bytes(), &key()).await),
        (
            400,
            "UK.OBIE.Field.Invalid".into(),
            "Line[2].InstructedAmount.Amount".into()
        )
    );
    // Another TPP cannot upload to this consent.
    let cc2 = cc_token(&p.pkjwt, "payments").await;
    assert_eq!(
        refused(upload(&p, &p.pkjwt, &cc2, &id, ct, &file, &key()).await),
        (400, "UK.OBIE.Resource.NotFound".into(), "ConsentId".into())
    );
    // Nothing was stored by any refusal: still AWUP, no file, and the right file goes up.
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "AWUP");
    let (s, _, _) = raw(
        tpp,
        Method::GET,
        &url(&p, &format!("/file-payment-consents/{id}/file")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(s, 400, "no file yet");
    // The idempotency key of an upload: same file → 200 again; another file → refused.
    let k = key();
    assert_eq!(upload(&p, tpp, &cc, &id, ct, &file, &k).await.0, 200);
    assert_eq!(upload(&p, tpp, &cc, &id, ct, &file, &k).await.0, 200);
    assert_eq!(
        refused(upload(&p, tpp, &cc, &id, ct, &other, &k).await).1,
        "UK.OBIE.Header.Invalid"
    );
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "AWAU");
    // Consent creation: the same key with another body is refused and creates nothing.
    let ck = key();
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/file-payment-consents"),
        &cc,
        Some(&body),
        Some(&ck),
    )
    .await;
    assert_eq!(r.status, 201);
    let first = r.body["Data"]["ConsentId"].clone();
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/file-payment-consents"),
        &cc,
        Some(&body),
        Some(&ck),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), &r.body["Data"]["ConsentId"]),
        (201, &first)
    );
    let mut changed = body.clone();
    changed["Data"]["Initiation"]["FileReference"] = json!("OTHER");
    let r = call(
        tpp,
        Method::POST,
        &url(&p, "/file-payment-consents"),
        &cc,
        Some(&changed),
        Some(&ck),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), code(&r).as_str()),
        (400, "UK.OBIE.Header.Invalid")
    );

    // Refused by the customer: RJCT, and no upload or payment can follow.
    let pkce = Pkce::new();
    let (customer, page) = consent_page(&p, tpp, &pkce, &id).await;
    let back = customer.decide_accounts(&page, false, &[]).await.unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "RJCT");
    assert_eq!(
        refused(upload(&p, tpp, &cc, &id, ct, &file, &key()).await).1,
        "UK.OBIE.Resource.InvalidConsentStatus"
    );
    let again = par(tpp, &Pkce::new(), &id).await;
    assert_eq!(again.status, 400, "a refused consent cannot be authorised");
    p.finish().await;
}

#[tokio::test]
async fn file_payments_need_the_token_of_that_authorised_consent() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let cc = cc_token(tpp, "payments").await;
    let file = json_file(&[item("A", "1.00", &bob[0].number, "Bob")]);
    let body = consent_body(&file, JSON_TYPE, 1, "1.00", Some(&alice[0].number));
    // Consent 1 authorised; consent 2 uploaded but not authorised.
    // Another TPP's authorised consent (first: its assertions use the wall clock, which
    // sign-ins leave behind the server's).
    let other = &p.pkjwt;
    let cc2 = cc_token(other, "payments").await;
    let o1 = create(&p, other, &body).await;
    assert_eq!(
        upload(&p, other, &cc2, &o1, "application/json", &file, &key())
            .await
            .0,
        200
    );
    let at_other = approve(&p, other, &o1, None).await;
    let c1 = create(&p, tpp, &body).await;
    let c2 = create(&p, tpp, &body).await;
    for c in [&c1, &c2] {
        assert_eq!(
            upload(&p, tpp, &cc, c, "application/json", &file, &key())
                .await
                .0,
            200
        );
    }
    let at1 = approve(&p, tpp, &c1, None).await;
    let a0 = balance(&p, &alice[0].id).await;
    // The token of consent 1 cannot execute the unauthorised consent 2.
    let r = execute(&p, tpp, &at1, &payment_body(&c2, &body), &key()).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // A client-credentials token cannot execute anything.
    let r = execute(&p, tpp, &cc, &payment_body(&c1, &body), &key()).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // Another TPP's token (of its own authorised consent), naming this TPP's consent.
    let r = execute(&p, other, &at_other, &payment_body(&c1, &body), &key()).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(balance(&p, &alice[0].id).await, a0, "nothing paid");
    assert_eq!(consent_status(&p, tpp, &cc, &c1).await, "AUTH");
    let r = execute(&p, tpp, &at1, &payment_body(&c1, &body), &key()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(balance(&p, &alice[0].id).await, a0 - 1_00);
    p.finish().await;
}

/// How the keys of one round of concurrent submissions are chosen.
#[derive(Clone, Copy, Debug)]
enum Keys {
    /// Every submission with the same key: all answer the one file payment (201).
    Same,
    /// Every submission with its own key: one executes, the others find the consent COND.
    Distinct,
    /// Half with one shared key, half with their own.
    Mixed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_execute_the_file_once() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let cc = cc_token(tpp, "payments").await;
    let items: Vec<Value> = (0..5)
        .map(|i| item(&format!("C-{i}"), "3.00", &bob[0].number, "Bob"))
        .collect();
    let file = json_file(&items);
    let body = consent_body(&file, JSON_TYPE, 5, "15", Some(&alice[0].number));
    const N: usize = 8;
    for keys in [Keys::Same, Keys::Distinct, Keys::Mixed] {
        let id = create(&p, tpp, &body).await;
        let (s, _) = upload(&p, tpp, &cc, &id, "application/json", &file, &key()).await;
        assert_eq!(s, 200);
        let at = approve(&p, tpp, &id, None).await;
        let (a0, b0) = (
            balance(&p, &alice[0].id).await,
            balance(&p, &bob[0].id).await,
        );
        let pay = payment_body(&id, &body);
        let shared = key();
        let calls = (0..N).map(|i| {
            let k = match keys {
                Keys::Same => shared.clone(),
                Keys::Distinct => key(),
                Keys::Mixed if i % 2 == 0 => shared.clone(),
                Keys::Mixed => key(),
            };
            let (p, pay, at) = (&p, &pay, &at);
            async move { execute(p, tpp, at, pay, &k).await }
        });
        let replies = futures::future::join_all(calls).await;
        let mut ids = std::collections::BTreeSet::new();
        let mut created = 0;
        for r in &replies {
            match r.status.as_u16() {
                201 => {
                    created += 1;
                    ids.insert(r.body["Data"]["FilePaymentId"].as_str().unwrap().to_owned());
                }
                400 => assert_eq!(
                    code(r),
                    "UK.OBIE.Resource.InvalidConsentStatus",
                    "{keys:?}: {:?}",
                    r.body
                ),
                s => panic!("{keys:?}: unexpected {s}: {:?}", r.body),
            }
        }
        assert_eq!(ids.len(), 1, "{keys:?}: one file payment: {ids:?}");
        match keys {
            Keys::Same => assert_eq!(created, N, "every replay answers 201"),
            Keys::Distinct => assert_eq!(created, 1, "one execution, the rest refused"),
            Keys::Mixed => assert!(created >= 1),
        }
        assert_eq!(
            balance(&p, &alice[0].id).await,
            a0 - 15_00,
            "{keys:?}: paid once"
        );
        assert_eq!(balance(&p, &bob[0].id).await, b0 + 15_00);
        let fid = ids.into_iter().next().unwrap();
        let d = get(
            &p,
            tpp,
            &cc,
            &format!("/file-payments/{fid}/payment-details"),
        )
        .await;
        assert_eq!(d.body["Data"]["PaymentStatus"].as_array().unwrap().len(), 5);
        assert_eq!(consent_status(&p, tpp, &cc, &id).await, "COND");
    }
    ledger_balanced(&p).await;
    p.finish().await;
}

/// Measurement, not a check (run with `--ignored --nocapture`): how long the execution of
/// a file of the largest allowed size (500 payments to accounts of this bank) takes, end to
/// end over mTLS. Prints the figure; asserts only the outcome.
#[tokio::test]
#[ignore]
async fn measure_execution_of_a_500_payment_file() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let items: Vec<Value> = (0..500)
        .map(|i| item(&format!("M-{i}"), "0.10", &bob[0].number, "Bob"))
        .collect();
    let file = json_file(&items);
    let body = consent_body(&file, JSON_TYPE, 500, "50.00", Some(&alice[0].number));
    let id = create(&p, tpp, &body).await;
    let cc = cc_token(tpp, "payments").await;
    let started = std::time::Instant::now();
    let (s, _) = upload(&p, tpp, &cc, &id, "application/json", &file, &key()).await;
    let upload_ms = started.elapsed().as_millis();
    assert_eq!(s, 200);
    let at = approve(&p, tpp, &id, None).await;
    let a0 = balance(&p, &alice[0].id).await;
    let started = std::time::Instant::now();
    let r = execute(&p, tpp, &at, &payment_body(&id, &body), &key()).await;
    let execute_ms = started.elapsed().as_millis();
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(balance(&p, &alice[0].id).await, a0 - 50_00);
    eprintln!(
        "backend={} file of 500 payments: upload+checks {upload_ms} ms, execution {execute_ms} ms",
        wekeza_tests::backend()
    );
    ledger_balanced(&p).await;
    p.finish().await;
}

/// `x-jws-signature` (ADR 0017) on the three file POSTs: the consent, the file upload
/// (over the file's exact bytes, whatever its format) and the execution. A missing or
/// mismatching signature is refused with the OB code and changes nothing; responses are
/// signed.
#[tokio::test]
async fn file_payment_requests_must_be_signed() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let cc = cc_token(tpp, "payments").await;
    let file = json_file(&[item("S-1", "2.00", &bob[0].number, "Bob")]);
    let body = consent_body(&file, JSON_TYPE, 1, "2.00", Some(&alice[0].number));
    let bytes = serde_json::to_vec(&body).unwrap();
    let consents = url(&p, "/file-payment-consents");
    let err_code = |b: &[u8]| {
        serde_json::from_slice::<Value>(b).unwrap()["Errors"][0]["ErrorCode"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // The consent: unsigned, or signed over other bytes → 400, no consent, key unused.
    let k = key();
    let ct = Some(("application/json", bytes.as_slice()));
    let (s, _, b) = raw_signed(tpp, Method::POST, &consents, &cc, ct, Some(&k), None).await;
    assert_eq!(
        (s, err_code(&b).as_str()),
        (400, "UK.OBIE.Signature.Missing")
    );
    let other_sig = tpp.jws_signature(b"{}").unwrap();
    let (s, _, b) = raw_signed(
        tpp,
        Method::POST,
        &consents,
        &cc,
        ct,
        Some(&k),
        Some(&other_sig),
    )
    .await;
    assert_eq!(
        (s, err_code(&b).as_str()),
        (400, "UK.OBIE.Signature.Invalid")
    );
    // The same idempotency key, now signed, creates it: the refusals spent nothing.
    let (s, _, b) = raw(tpp, Method::POST, &consents, &cc, ct, Some(&k)).await;
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    let id = serde_json::from_slice::<Value>(&b).unwrap()["Data"]["ConsentId"]
        .as_str()
        .unwrap()
        .to_owned();

    // The file: a signature over other bytes is refused and the consent stays AWUP.
    let file_url = url(&p, &format!("/file-payment-consents/{id}/file"));
    let f = Some(("application/json", file.as_slice()));
    let (s, _, b) = raw_signed(tpp, Method::POST, &file_url, &cc, f, Some(&key()), None).await;
    assert_eq!(
        (s, err_code(&b).as_str()),
        (400, "UK.OBIE.Signature.Missing")
    );
    let (s, _, b) = raw_signed(
        tpp,
        Method::POST,
        &file_url,
        &cc,
        f,
        Some(&key()),
        Some(&other_sig),
    )
    .await;
    assert_eq!(
        (s, err_code(&b).as_str()),
        (400, "UK.OBIE.Signature.Invalid")
    );
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "AWUP");
    assert_eq!(
        upload(&p, tpp, &cc, &id, "application/json", &file, &key())
            .await
            .0,
        200
    );

    // The execution: unsigned → refused, nothing moves; signed → 201, response signed.
    let at = approve(&p, tpp, &id, None).await;
    let pay = serde_json::to_vec(&payment_body(&id, &body)).unwrap();
    let pay_url = url(&p, "/file-payments");
    let before = balance(&p, &alice[0].id).await;
    let pb = Some(("application/json", pay.as_slice()));
    let (s, _, b) = raw_signed(tpp, Method::POST, &pay_url, &at, pb, Some(&key()), None).await;
    assert_eq!(
        (s, err_code(&b).as_str()),
        (400, "UK.OBIE.Signature.Missing")
    );
    assert_eq!(balance(&p, &alice[0].id).await, before);
    assert_eq!(consent_status(&p, tpp, &cc, &id).await, "AUTH");
    let r = execute(&p, tpp, &at, &payment_body(&id, &body), &key()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(
        r.headers.get("x-jws-signature").is_some(),
        "response signed"
    );
    assert_eq!(balance(&p, &alice[0].id).await, before - 2_00);
    p.finish().await;
}
