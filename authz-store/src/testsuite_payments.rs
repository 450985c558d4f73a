//! Backend-independent suite for [`PaymentStore`]: every SQL backend must pass it
//! unchanged. Fresh ids throughout, so it can run repeatedly against a shared database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::inconsistent_digit_grouping
)]

use futures::future::join_all;
use serde_json::json;

use crate::{
    AuditEntry, ConsentRecord, ConsentStatus, Created, DurableStore, EventStore, EventSubscription,
    Executed, IdempotencyRecord, LedgerAccountSeed, PaymentExecution, PaymentRecord, PaymentStore,
};

fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

const NOW: i64 = 1_800_000_000;

pub fn seed(id: &str, opening: i64, limit: i64, currency: &str) -> LedgerAccountSeed {
    LedgerAccountSeed {
        id: id.to_owned(),
        customer_id: "bank-cust".into(),
        scheme: "KE.WEKEZA.AccountNumber".into(),
        identification: format!("no-{id}"),
        name: format!("account {id}"),
        currency: currency.into(),
        opening_balance: opening,
        overdraft_limit: limit,
    }
}

fn key(client: &str, k: &str, hash: &str, resource: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        client_id: client.into(),
        key: k.into(),
        request_hash: hash.into(),
        resource_id: resource.into(),
        created_at: NOW,
        expires_at: NOW + crate::IDEMPOTENCY_TTL_SECS,
    }
}

fn audit(consent: &str, action: &str) -> AuditEntry {
    AuditEntry {
        consent_id: consent.into(),
        at: NOW,
        actor: "test".into(),
        action: action.into(),
        detail: String::new(),
    }
}

/// A domestic-payment consent of `client`, authorised by `customer`.
pub async fn authorised_consent(
    durable: &dyn DurableStore,
    store: &dyn PaymentStore,
    client: &str,
    customer: &str,
) -> String {
    let id = format!("pc-{}", uid());
    let c = ConsentRecord {
        id: id.clone(),
        client_id: client.into(),
        customer_id: None,
        kind: "domestic-payment".into(),
        scopes: "payments".into(),
        status: ConsentStatus::AwaitingAuthorisation,
        details: json!({"v": 1}),
        created_at: NOW,
        updated_at: NOW,
        expires_at: None,
    };
    let k = key(client, &uid(), "h", &id);
    assert_eq!(
        store
            .create_consent_idempotent(&c, &audit(&id, "created"), &k)
            .await
            .unwrap(),
        Created::Done
    );
    assert!(
        durable
            .update_consent(
                &id,
                &[ConsentStatus::AwaitingAuthorisation],
                ConsentStatus::Authorised,
                Some(customer),
                None,
                &audit(&id, "authorised"),
            )
            .await
            .unwrap()
    );
    id
}

#[allow(clippy::too_many_arguments)]
pub fn execution(
    client: &str,
    customer: &str,
    consent: &str,
    debtor: &str,
    creditor_identification: &str,
    amount: i64,
    idem_key: &str,
    outcome: &str,
) -> PaymentExecution {
    let id = format!("dp-{}", uid());
    PaymentExecution {
        payment: PaymentRecord {
            id: id.clone(),
            consent_id: consent.into(),
            client_id: client.into(),
            customer_id: customer.into(),
            debtor_account_id: debtor.into(),
            creditor_account_id: None,
            external: false,
            amount,
            currency: "KES".into(),
            status: "RCVD".into(),
            status_reason: None,
            details: json!({"Initiation": {}}),
            clearing_outcome: None,
            next_action_at: None,
            created_at: NOW,
            updated_at: NOW,
        },
        creditor_scheme: "KE.WEKEZA.AccountNumber".into(),
        creditor_identification: creditor_identification.into(),
        clearing_after_secs: 5,
        clearing_outcome: outcome.into(),
        consent_details: json!({"v": 2, "payment_id": id}),
        consent_authorised_after: i64::MIN,
        audit: audit(consent, "consumed"),
        idempotency: key(client, idem_key, &format!("hash-{consent}"), &id),
    }
}

async fn balance(store: &dyn PaymentStore, id: &str) -> i64 {
    store.ledger_account(id).await.unwrap().unwrap().balance
}

fn done(e: Executed) -> PaymentRecord {
    match e {
        Executed::Done(p) => *p,
        other => panic!("expected a committed payment, got {other:?}"),
    }
}

/// Every [`PaymentStore`] rule, on one backend.
pub async fn payment_suite<S: DurableStore + PaymentStore>(s: &S) {
    let (client, customer) = (format!("c-{}", uid()), format!("u-{}", uid()));
    let (a, b, usd) = (uid(), uid(), uid());

    // Seeding is idempotent: one opening posting, whoever seeds how often.
    assert!(
        s.seed_ledger_account(&seed(&a, 100_00, 50_00, "KES"), NOW)
            .await
            .unwrap()
    );
    assert!(
        !s.seed_ledger_account(&seed(&a, 999_00, 0, "KES"), NOW)
            .await
            .unwrap()
    );
    assert!(
        s.seed_ledger_account(&seed(&b, 0, 0, "KES"), NOW)
            .await
            .unwrap()
    );
    assert!(
        s.seed_ledger_account(&seed(&usd, 10_00, 0, "USD"), NOW)
            .await
            .unwrap()
    );
    let acct = s.ledger_account(&a).await.unwrap().unwrap();
    assert_eq!((acct.balance, acct.available()), (100_00, 150_00));

    // Consent creation with a key: the same key again creates nothing.
    let cid = format!("pc-{}", uid());
    let rec = ConsentRecord {
        id: cid.clone(),
        client_id: client.clone(),
        customer_id: None,
        kind: "domestic-payment".into(),
        scopes: "payments".into(),
        status: ConsentStatus::AwaitingAuthorisation,
        details: json!({}),
        created_at: NOW,
        updated_at: NOW,
        expires_at: None,
    };
    let k1 = key(&client, "key-1", "h1", &cid);
    assert_eq!(
        s.create_consent_idempotent(&rec, &audit(&cid, "created"), &k1)
            .await
            .unwrap(),
        Created::Done
    );
    let mut again = rec.clone();
    again.id = format!("pc-{}", uid());
    let k1b = key(&client, "key-1", "h2", &again.id);
    match s
        .create_consent_idempotent(&again, &audit(&again.id, "created"), &k1b)
        .await
        .unwrap()
    {
        Created::KeyInUse(k) => {
            assert_eq!((k.resource_id, k.request_hash), (cid.clone(), "h1".into()))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        s.find_consent(&again.id).await.unwrap().is_none(),
        "nothing written"
    );
    // Another client may use the same key.
    let mut other = rec.clone();
    other.id = format!("pc-{}", uid());
    other.client_id = format!("c-{}", uid());
    let ko = key(&other.client_id, "key-1", "h1", &other.id);
    assert_eq!(
        s.create_consent_idempotent(&other, &audit(&other.id, "created"), &ko)
            .await
            .unwrap(),
        Created::Done
    );
    // An expired key is free again.
    let mut late = key(&client, "key-1", "h3", &format!("pc-{}", uid()));
    late.created_at = NOW + crate::IDEMPOTENCY_TTL_SECS;
    late.expires_at = late.created_at + crate::IDEMPOTENCY_TTL_SECS;
    assert!(
        s.find_idempotency(&client, "key-1", late.created_at)
            .await
            .unwrap()
            .is_none()
    );

    // An internal payment: settled at once, both legs in one posting.
    let c1 = authorised_consent(s, s, &client, &customer).await;
    let x = execution(
        &client,
        &customer,
        &c1,
        &a,
        &format!("no-{b}"),
        30_00,
        "pay-1",
        "settle",
    );
    let p = done(s.execute_payment(&x).await.unwrap());
    assert_eq!((p.status.as_str(), p.external), ("ACSC", false));
    assert_eq!(p.creditor_account_id.as_deref(), Some(b.as_str()));
    assert_eq!((balance(s, &a).await, balance(s, &b).await), (70_00, 30_00));
    let c = s.find_consent(&c1).await.unwrap().unwrap();
    assert_eq!(c.status, ConsentStatus::Consumed);
    assert_eq!(c.details["payment_id"], json!(p.id));
    // The same key again: nothing moves, the first payment is named.
    let mut replay = execution(
        &client,
        &customer,
        &c1,
        &a,
        &format!("no-{b}"),
        30_00,
        "pay-1",
        "settle",
    );
    replay.idempotency.request_hash = x.idempotency.request_hash.clone();
    match s.execute_payment(&replay).await.unwrap() {
        Executed::KeyInUse(k) => assert_eq!(k.resource_id, p.id),
        other => panic!("{other:?}"),
    }
    // A new key on the consumed consent: refused, nothing moves.
    let y = execution(
        &client,
        &customer,
        &c1,
        &a,
        &format!("no-{b}"),
        30_00,
        "pay-2",
        "settle",
    );
    assert_eq!(
        s.execute_payment(&y).await.unwrap(),
        Executed::ConsentNotAuthorised
    );
    assert!(
        s.find_idempotency(&client, "pay-2", NOW)
            .await
            .unwrap()
            .is_none(),
        "key not kept"
    );
    assert_eq!(balance(s, &a).await, 70_00);
    assert!(s.find_payment(&y.payment.id).await.unwrap().is_none());

    // Another client's or another customer's consent: refused.
    let c2 = authorised_consent(s, s, &client, &customer).await;
    let wrong_client = execution(
        "someone-else",
        &customer,
        &c2,
        &a,
        "x",
        1_00,
        &uid(),
        "settle",
    );
    assert_eq!(
        s.execute_payment(&wrong_client).await.unwrap(),
        Executed::ConsentNotAuthorised
    );
    let wrong_customer = execution(
        &client,
        "someone-else",
        &c2,
        &a,
        "x",
        1_00,
        &uid(),
        "settle",
    );
    assert_eq!(
        s.execute_payment(&wrong_customer).await.unwrap(),
        Executed::ConsentNotAuthorised
    );
    // Authorised at NOW, but its lifetime asks for an authorisation after NOW: refused,
    // nothing written, the consent stays authorised (for the sweep to expire).
    let cl = authorised_consent(s, s, &client, &customer).await;
    let mut lapsed = execution(&client, &customer, &cl, &a, "x", 1_00, &uid(), "settle");
    lapsed.consent_authorised_after = NOW;
    assert_eq!(
        s.execute_payment(&lapsed).await.unwrap(),
        Executed::ConsentNotAuthorised
    );
    assert!(s.find_payment(&lapsed.payment.id).await.unwrap().is_none());
    assert!(
        s.find_idempotency(&client, &lapsed.idempotency.key, NOW)
            .await
            .unwrap()
            .is_none(),
        "key not kept"
    );
    assert_eq!(
        s.find_consent(&cl).await.unwrap().unwrap().status,
        ConsentStatus::Authorised
    );
    // A limit one second earlier: within its lifetime, so the consent is consumed (the
    // amount is beyond the overdraft, so it is rejected for funds and no money moves).
    let mut within = execution(
        &client,
        &customer,
        &cl,
        &a,
        &format!("no-{b}"),
        999_00,
        &uid(),
        "settle",
    );
    within.consent_authorised_after = NOW - 1;
    assert_eq!(
        done(s.execute_payment(&within).await.unwrap())
            .status_reason
            .as_deref(),
        Some("AM04")
    );
    assert_eq!(
        s.find_consent(&cl).await.unwrap().unwrap().status,
        ConsentStatus::Consumed
    );
    assert_eq!(balance(s, &a).await, 70_00);
    assert_eq!(
        s.find_consent(&c2).await.unwrap().unwrap().status,
        ConsentStatus::Authorised
    );

    // Beyond the overdraft: rejected (AM04), consent consumed, no money moves.
    let x = execution(
        &client,
        &customer,
        &c2,
        &a,
        &format!("no-{b}"),
        120_01,
        &uid(),
        "settle",
    );
    let p = done(s.execute_payment(&x).await.unwrap());
    assert_eq!(
        (p.status.as_str(), p.status_reason.as_deref()),
        ("RJCT", Some("AM04"))
    );
    assert_eq!((balance(s, &a).await, balance(s, &b).await), (70_00, 30_00));
    // Exactly down to the limit is allowed.
    let c3 = authorised_consent(s, s, &client, &customer).await;
    let x = execution(
        &client,
        &customer,
        &c3,
        &a,
        &format!("no-{b}"),
        120_00,
        &uid(),
        "settle",
    );
    assert_eq!(done(s.execute_payment(&x).await.unwrap()).status, "ACSC");
    assert_eq!(balance(s, &a).await, -50_00);
    // A creditor account in another currency: AM03, nothing moves.
    let c4 = authorised_consent(s, s, &client, &customer).await;
    let x = execution(
        &client,
        &customer,
        &c4,
        &b,
        &format!("no-{usd}"),
        1_00,
        &uid(),
        "settle",
    );
    let p = done(s.execute_payment(&x).await.unwrap());
    assert_eq!(
        (p.status.as_str(), p.status_reason.as_deref()),
        ("RJCT", Some("AM03"))
    );

    // To another bank: ACSP until the clearing answers; settle, or reject with the money back.
    let c5 = authorised_consent(s, s, &client, &customer).await;
    let x = execution(
        &client,
        &customer,
        &c5,
        &b,
        "elsewhere-1",
        10_00,
        &uid(),
        "settle",
    );
    let settled = done(s.execute_payment(&x).await.unwrap());
    assert_eq!((settled.status.as_str(), settled.external), ("ACSP", true));
    let c6 = authorised_consent(s, s, &client, &customer).await;
    let x = execution(
        &client,
        &customer,
        &c6,
        &b,
        "elsewhere-2",
        5_13,
        &uid(),
        "reject",
    );
    let rejected = done(s.execute_payment(&x).await.unwrap());
    assert_eq!(balance(s, &b).await, 150_00 - 10_00 - 5_13);
    assert_eq!(
        s.advance_clearing(NOW + 4, 100).await.unwrap(),
        0,
        "not due yet"
    );
    assert!(s.advance_clearing(NOW + 5, 1000).await.unwrap() >= 2);
    assert_eq!(
        s.find_payment(&settled.id).await.unwrap().unwrap().status,
        "ACSC"
    );
    let r = s.find_payment(&rejected.id).await.unwrap().unwrap();
    assert_eq!(
        (r.status.as_str(), r.status_reason.as_deref()),
        ("RJCT", Some("AC04"))
    );
    assert_eq!(
        balance(s, &b).await,
        150_00 - 10_00,
        "returned money is back"
    );
    let log: Vec<String> = s
        .payment_status_log(&rejected.id)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.status)
        .collect();
    assert_eq!(log, ["ACSP", "RJCT"]);
    assert_eq!(
        s.advance_clearing(NOW + 100, 1000).await.unwrap(),
        0,
        "each moves once"
    );

    // The portal's "settle now" (ADR 0014): only the owner client's ACSP payments, before
    // their due time, with the stored outcome (a rejection returns the money), once.
    let before = balance(s, &b).await;
    let mut now_ids = Vec::new();
    for (amount, outcome) in [(3_00, "settle"), (2_13, "reject")] {
        let c = authorised_consent(s, s, &client, &customer).await;
        let x = execution(
            &client,
            &customer,
            &c,
            &b,
            "elsewhere-3",
            amount,
            &uid(),
            outcome,
        );
        now_ids.push(done(s.execute_payment(&x).await.unwrap()).id);
    }
    let listed: Vec<String> = s
        .payments_in_clearing(&client, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert!(now_ids.iter().all(|i| listed.contains(i)), "{listed:?}");
    assert!(
        s.payments_in_clearing("c-nobody", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.clear_now(&now_ids[0], "c-nobody", NOW).await.unwrap(),
        None
    );
    assert_eq!(
        s.find_payment(&now_ids[0]).await.unwrap().unwrap().status,
        "ACSP",
        "another client's attempt changes nothing"
    );
    let settled = s
        .clear_now(&now_ids[0], &client, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settled.status, "ACSC");
    let rejected = s
        .clear_now(&now_ids[1], &client, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rejected.status.as_str(), rejected.status_reason.as_deref()),
        ("RJCT", Some("AC04"))
    );
    assert_eq!(
        balance(s, &b).await,
        before - 3_00,
        "the rejected one came back"
    );
    assert_eq!(s.clear_now(&now_ids[0], &client, NOW).await.unwrap(), None);
    assert!(
        s.payments_in_clearing(&client, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let check = s.ledger_check().await.unwrap();
    assert_eq!(check.entries_sum, 0);
    assert!(check.unbalanced_postings.is_empty(), "{check:?}");
    assert!(check.balance_mismatches.is_empty(), "{check:?}");
}

/// Hundreds of concurrent payments from one account, every fourth request a duplicate
/// of another's idempotency key: the balance never passes the limit, each consent pays
/// at most once, each key has one effect, and the ledger stays balanced.
pub async fn payment_race_suite<S: DurableStore + PaymentStore>(s: &S, payments: usize) {
    let (client, customer) = (format!("c-{}", uid()), format!("u-{}", uid()));
    let (a, b) = (uid(), uid());
    let opening = 1_000_00;
    let limit = 200_00;
    s.seed_ledger_account(&seed(&a, opening, limit, "KES"), NOW)
        .await
        .unwrap();
    s.seed_ledger_account(&seed(&b, 0, 0, "KES"), NOW)
        .await
        .unwrap();
    let mut xs = Vec::new();
    for i in 0..payments {
        let c = authorised_consent(s, s, &client, &customer).await;
        // 7.00 .. 16.99: more is asked than the account can pay.
        let amount = 7_00 + (i as i64 * 37) % 1000;
        let creditor = if i % 3 == 0 {
            "elsewhere".to_owned()
        } else {
            format!("no-{b}")
        };
        xs.push(execution(
            &client,
            &customer,
            &c,
            &a,
            &creditor,
            amount,
            &format!("k-{i}"),
            "settle",
        ));
    }
    let dups: Vec<PaymentExecution> = xs
        .iter()
        .step_by(4)
        .map(|x| {
            let mut d = x.clone();
            d.payment.id = format!("dp-{}", uid());
            d.idempotency.resource_id = d.payment.id.clone();
            d
        })
        .collect();
    let all: Vec<&PaymentExecution> = xs.iter().chain(dups.iter()).collect();
    let results = join_all(all.iter().map(|x| s.execute_payment(x))).await;
    let mut paid = 0i64;
    let (mut accepted, mut refused, mut replays) = (0, 0, 0);
    for (x, r) in all.iter().zip(results) {
        match r.unwrap() {
            Executed::Done(p) => {
                if p.status == "RJCT" {
                    assert_eq!(
                        p.status_reason.as_deref(),
                        Some("AM04"),
                        "only funds refuse"
                    );
                    refused += 1;
                } else {
                    paid += p.amount;
                    accepted += 1;
                }
            }
            Executed::KeyInUse(k) => {
                assert_eq!(k.request_hash, x.idempotency.request_hash);
                replays += 1;
            }
            Executed::ConsentNotAuthorised => panic!("every consent is authorised once"),
        }
    }
    assert_eq!(accepted + refused, payments, "none lost, none twice");
    assert_eq!(replays, dups.len());
    assert!(refused > 0, "the race must hit the limit");
    let bal = balance(s, &a).await;
    assert_eq!(bal, opening - paid);
    assert!(bal >= -limit);
    let check = s.ledger_check().await.unwrap();
    assert_eq!(check.entries_sum, 0);
    assert!(check.unbalanced_postings.is_empty() && check.balance_mismatches.is_empty());
}

/// (rty, rid, consent, txn) of the events waiting for `client`'s polling subscription.
async fn polled<S: EventStore>(s: &S, client: &str) -> Vec<(String, String, String, String)> {
    s.pending_for_polling(client, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(e, _)| {
            assert_eq!(e.event.event_type, crate::EVENT_RESOURCE_UPDATE);
            assert_eq!(e.event.client_id, client);
            let path = match e.event.rty.as_str() {
                "domestic-payment" => "domestic-payments",
                _ => "domestic-payment-consents",
            };
            assert_eq!(
                e.event.link,
                format!("/open-banking/v4.0/pisp/{path}/{}", e.event.rid)
            );
            let consent = e.event.consent_id.unwrap_or_default();
            (e.event.rty, e.event.rid, consent, e.event.txn)
        })
        .collect()
}

/// Payment events (ADR 0012): every committed status change of a payment or its consent
/// writes one `resource-update` for the owning client, in the same transaction; a replayed
/// or refused execution writes none; no other client gets any.
pub async fn payment_events_suite<S: DurableStore + PaymentStore + EventStore>(s: &S) {
    let (client, other, customer) = (
        format!("c-{}", uid()),
        format!("c-{}", uid()),
        format!("u-{}", uid()),
    );
    for c in [&client, &other] {
        s.insert_subscription(&EventSubscription {
            id: format!("sub-{}", uid()),
            client_id: c.clone(),
            callback_url: None,
            version: "4.0".into(),
            event_types: vec![],
            created_at: NOW,
            updated_at: NOW,
        })
        .await
        .unwrap();
    }
    let debtor = uid();
    s.seed_ledger_account(&seed(&debtor, 100_00, 0, "KES"), NOW)
        .await
        .unwrap();
    let consent = authorised_consent(s, s, &client, &customer).await;
    let ev = polled(s, &client).await;
    assert_eq!(ev.len(), 1, "authorised: {ev:?}");
    assert_eq!(
        (ev[0].0.as_str(), &ev[0].1),
        ("domestic-payment-consent", &consent)
    );

    // Executed to another bank (ACSP): the consent's consumption and the payment, one txn.
    let ext = format!("EXT-{}", uid());
    let x = execution(
        &client,
        &customer,
        &consent,
        &debtor,
        &ext,
        10_00,
        &uid(),
        "settle",
    );
    let p = done(s.execute_payment(&x).await.unwrap());
    assert_eq!(p.status, "ACSP");
    // Replayed (the key is in use) and re-executed with a new key (consent consumed):
    // both refused, neither writes an event.
    assert!(matches!(
        s.execute_payment(&x).await.unwrap(),
        Executed::KeyInUse(_)
    ));
    let again = execution(
        &client,
        &customer,
        &consent,
        &debtor,
        &ext,
        10_00,
        &uid(),
        "settle",
    );
    assert_eq!(
        s.execute_payment(&again).await.unwrap(),
        Executed::ConsentNotAuthorised
    );
    let ev = polled(s, &client).await;
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(
        (ev[1].0.as_str(), &ev[1].1),
        ("domestic-payment-consent", &consent)
    );
    assert_eq!((ev[2].0.as_str(), &ev[2].1), ("domestic-payment", &p.id));
    assert_eq!(ev[2].2, consent, "the payment's event names its consent");
    assert_eq!(ev[1].3, ev[2].3, "consumption and payment share the txn");

    // Cleared: one more event for the payment (ACSC), none on a second clearing run.
    assert!(s.advance_clearing(NOW + 5, 10_000).await.unwrap() >= 1);
    assert_eq!(s.find_payment(&p.id).await.unwrap().unwrap().status, "ACSC");
    s.advance_clearing(NOW + 5, 10_000).await.unwrap();
    let ev = polled(s, &client).await;
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert_eq!((ev[3].0.as_str(), &ev[3].1), ("domestic-payment", &p.id));
    assert_ne!(ev[3].3, ev[2].3, "another status change, another txn");

    // Insufficient funds: recorded RJCT, which is a status change with its event.
    let poor = authorised_consent(s, s, &client, &customer).await;
    let x = execution(
        &client,
        &customer,
        &poor,
        &debtor,
        &ext,
        1_000_00,
        &uid(),
        "settle",
    );
    let r = done(s.execute_payment(&x).await.unwrap());
    assert_eq!(r.status, "RJCT");
    let ev = polled(s, &client).await;
    assert_eq!(ev.len(), 7, "{ev:?}");
    let about = |id: &str| ev.iter().filter(|e| e.1 == id).count();
    assert_eq!((about(&poor), about(&r.id)), (2, 1), "{ev:?}");
    // Ordered by event time: the clearing's event (NOW + 5) stays last.
    assert_eq!(ev[6].1, p.id);

    // Nothing for the other client.
    assert!(polled(s, &other).await.is_empty());
}
