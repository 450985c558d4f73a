//! The event outbox, subscriptions and delivery claims on every SQL backend: SQLite always,
//! PostgreSQL when `WEKEZA_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_store::{
    AttemptResult, AuditEntry, ConsentRecord, ConsentStatus, DeliveryState, DurableStore,
    EVENT_CONSENT_REVOKED, EVENT_RESOURCE_UPDATE, EventStore, EventSubscription, NewEvent,
    SqlStore,
};
use serde_json::json;
use std::collections::HashSet;

fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn sub(client_id: &str, callback: Option<&str>, types: &[&str]) -> EventSubscription {
    EventSubscription {
        id: format!("sub-{}", uid()),
        client_id: client_id.into(),
        callback_url: callback.map(str::to_owned),
        version: "4.0".into(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        created_at: 1,
        updated_at: 1,
    }
}

fn event(client_id: &str, consent_id: Option<&str>, toe: i64) -> NewEvent {
    NewEvent {
        client_id: client_id.into(),
        consent_id: consent_id.map(str::to_owned),
        event_type: EVENT_RESOURCE_UPDATE.into(),
        rid: format!("pmt-{}", uid()),
        rty: "domestic-payment".into(),
        link: "/open-banking/v4.0/pisp/domestic-payments/x".into(),
        detail: json!({}),
        txn: uid(),
        toe,
    }
}

fn ok(at_ms: i64) -> AttemptResult {
    AttemptResult {
        at_ms,
        status_code: Some(202),
        error: None,
        latency_ms: 3,
        new_state: DeliveryState::Delivered,
        next_attempt_ms: at_ms,
    }
}

fn audit(id: &str, at: i64, actor: &str) -> AuditEntry {
    AuditEntry {
        consent_id: id.into(),
        at,
        actor: actor.into(),
        action: "x".into(),
        detail: String::new(),
    }
}

/// Everything below uses fresh client ids, so the suite runs on a shared database.
async fn events_suite(store: &SqlStore) {
    let now = 1_700_000_000_i64;
    let ms = now * 1000;

    // --- consent changes write their event in the same transaction -----------------------
    let tpp = format!("tpp-{}", uid());
    let other = format!("tpp-{}", uid());
    let s = sub(&tpp, Some("https://tpp.example/cb"), &[]);
    store.insert_subscription(&s).await.unwrap();
    let s_other = sub(&other, Some("https://other.example/cb"), &[]);
    store.insert_subscription(&s_other).await.unwrap();
    let c = ConsentRecord {
        id: format!("aac-{}", uid()),
        client_id: tpp.clone(),
        customer_id: None,
        kind: "account-access".into(),
        scopes: "accounts".into(),
        status: ConsentStatus::AwaitingAuthorisation,
        details: json!({}),
        created_at: now,
        updated_at: now,
        expires_at: None,
    };
    store
        .insert_consent(&c, &audit(&c.id, now, "client:x"))
        .await
        .unwrap();
    // A refused (guarded) transition writes no event.
    assert!(
        !store
            .transition_consent(
                &c.id,
                &[ConsentStatus::Authorised],
                ConsentStatus::Revoked,
                &audit(&c.id, now, "customer:a"),
            )
            .await
            .unwrap()
    );
    assert!(store.list_deliveries(&s.id, 10).await.unwrap().is_empty());
    assert!(
        store
            .update_consent(
                &c.id,
                &[ConsentStatus::AwaitingAuthorisation],
                ConsentStatus::Authorised,
                Some("cust"),
                None,
                &audit(&c.id, now, "customer:a"),
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .transition_consent(
                &c.id,
                &[ConsentStatus::Authorised],
                ConsentStatus::Revoked,
                &audit(&c.id, now + 1, "customer:a"),
            )
            .await
            .unwrap()
    );
    let d = store.list_deliveries(&s.id, 10).await.unwrap();
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[0].event_type, EVENT_CONSENT_REVOKED, "newest first");
    assert_eq!(d[1].event_type, EVENT_RESOURCE_UPDATE);
    assert!(
        store
            .list_deliveries(&s_other.id, 10)
            .await
            .unwrap()
            .is_empty(),
        "another TPP's subscription gets nothing"
    );

    // --- claims: oldest per subscription first, one at a time, with the consent status ---
    let first = store.claim_due(ms, 30_000, 100).await.unwrap();
    let mine: Vec<_> = first.iter().filter(|x| x.subscription_id == s.id).collect();
    assert_eq!(mine.len(), 1, "only the head of the subscription's queue");
    assert_eq!(mine[0].event.event.event_type, EVENT_RESOURCE_UPDATE);
    assert_eq!(mine[0].consent_status, Some(ConsentStatus::Revoked));
    // Leased: not claimable again until the lease runs out.
    let again = store.claim_due(ms + 1, 30_000, 100).await.unwrap();
    assert!(again.iter().all(|x| x.subscription_id != s.id));
    // After the lease ran out (a dispatcher died) the same delivery comes back...
    let re = store.claim_due(ms + 30_000, 30_000, 100).await.unwrap();
    let re: Vec<_> = re
        .into_iter()
        .filter(|x| x.subscription_id == s.id)
        .collect();
    assert_eq!(re.len(), 1);
    assert_eq!(re[0].event.id, mine[0].event.id);
    // ...and the old lease holder can no longer record a result.
    assert!(
        !store
            .record_attempt(mine[0], &ok(ms + 30_001))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_attempt(&re[0], &ok(ms + 30_001))
            .await
            .unwrap()
    );
    let next = store.claim_due(ms + 30_002, 30_000, 100).await.unwrap();
    let next: Vec<_> = next
        .into_iter()
        .filter(|x| x.subscription_id == s.id)
        .collect();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event.event.event_type, EVENT_CONSENT_REVOKED);
    // A failed attempt keeps it pending until its retry time.
    let retry = AttemptResult {
        status_code: Some(500),
        new_state: DeliveryState::Pending,
        next_attempt_ms: ms + 40_000,
        ..ok(ms + 30_003)
    };
    assert!(store.record_attempt(&next[0], &retry).await.unwrap());
    assert!(
        store
            .claim_due(ms + 39_999, 30_000, 100)
            .await
            .unwrap()
            .iter()
            .all(|x| x.subscription_id != s.id)
    );
    let due = store.claim_due(ms + 40_000, 30_000, 100).await.unwrap();
    let due: Vec<_> = due
        .into_iter()
        .filter(|x| x.subscription_id == s.id)
        .collect();
    assert_eq!(due[0].attempts, 1);
    assert!(
        store
            .record_attempt(&due[0], &ok(ms + 40_001))
            .await
            .unwrap()
    );
    let log = store.list_attempts(&s.id, 10).await.unwrap();
    assert_eq!(
        log.iter()
            .map(|a| (a.status_code, a.outcome.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (Some(202), "delivered"),
            (Some(500), "pending"),
            (Some(202), "delivered")
        ]
    );
    // Manual redelivery puts a finished delivery back; a pending one is refused.
    assert!(
        store
            .redeliver(&s.id, &due[0].event.id, ms + 50_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .redeliver(&s.id, &due[0].event.id, ms + 50_000)
            .await
            .unwrap()
    );
    let red = store.claim_due(ms + 50_000, 30_000, 100).await.unwrap();
    assert!(red.iter().any(|x| x.event.id == due[0].event.id));

    // --- event-type filter and subscription removal --------------------------------------
    let t2 = format!("tpp-{}", uid());
    let only_revoked = sub(&t2, Some("https://t2.example/cb"), &[EVENT_CONSENT_REVOKED]);
    store.insert_subscription(&only_revoked).await.unwrap();
    store.enqueue(&event(&t2, None, now), ms).await.unwrap();
    assert!(
        store
            .list_deliveries(&only_revoked.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .delete_subscription(&t2, &only_revoked.id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_subscription(&t2, &only_revoked.id)
            .await
            .unwrap()
    );
    assert!(
        store
            .find_subscription(&t2, &only_revoked.id)
            .await
            .unwrap()
            .is_none()
    );

    // --- polling: subscriptions without a callback ----------------------------------------
    let t3 = format!("tpp-{}", uid());
    let poll = sub(&t3, None, &[]);
    store.insert_subscription(&poll).await.unwrap();
    let e1 = store.enqueue(&event(&t3, None, now + 2), ms).await.unwrap();
    let e0 = store.enqueue(&event(&t3, None, now + 1), ms).await.unwrap();
    let pending = store.pending_for_polling(&t3, 10).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|(e, _)| e.id.clone())
            .collect::<Vec<_>>(),
        vec![e0.clone(), e1.clone()],
        "by event time"
    );
    // Polling subscriptions are never claimed for callbacks.
    assert!(
        store
            .claim_due(ms + 60_000, 1, 1000)
            .await
            .unwrap()
            .iter()
            .all(|x| x.subscription_id != poll.id)
    );
    store
        .finish_polled(&t3, &e0, DeliveryState::Acked, None, ms)
        .await
        .unwrap();
    // Another TPP cannot acknowledge t3's events.
    store
        .finish_polled(&other, &e1, DeliveryState::Acked, None, ms)
        .await
        .unwrap();
    let pending = store.pending_for_polling(&t3, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0.id, e1);

    // --- concurrent claimers never get the same delivery -----------------------------------
    let t4 = format!("tpp-{}", uid());
    for _ in 0..20 {
        let s4 = sub(&t4, Some("https://t4.example/cb"), &[]);
        store.insert_subscription(&s4).await.unwrap();
    }
    for i in 0..3 {
        store.enqueue(&event(&t4, None, now + i), ms).await.unwrap();
    }
    let at = ms + 100_000;
    let claims = futures::future::join_all((0..6).map(|_| store.claim_due(at, 30_000, 5))).await;
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in claims {
        for d in c.unwrap() {
            total += 1;
            assert!(
                seen.insert(d.delivery_seq),
                "claimed twice: {}",
                d.delivery_seq
            );
        }
    }
    assert!(total > 0);

    // --- leases run on their own clock: a due-clock jump does not free a leased delivery ---
    let t5 = format!("tpp-{}", uid());
    let s5 = sub(&t5, Some("https://t5.example/cb"), &[]);
    store.insert_subscription(&s5).await.unwrap();
    store.enqueue(&event(&t5, None, now), ms).await.unwrap();
    let wall = 5_000_000_i64;
    let mine = |v: Vec<authz_store::ClaimedDelivery>| -> Vec<authz_store::ClaimedDelivery> {
        v.into_iter()
            .filter(|x| x.subscription_id == s5.id)
            .collect()
    };
    let held = mine(
        store
            .claim_due_leased(ms + 200_000, wall, 30_000, 1000)
            .await
            .unwrap(),
    );
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].lease_until_ms, wall + 30_000);
    // The platform clock jumps an hour; the wall clock moved 10 ms: still leased.
    let jumped = mine(
        store
            .claim_due_leased(ms + 3_800_000, wall + 10, 30_000, 1000)
            .await
            .unwrap(),
    );
    assert!(jumped.is_empty(), "claimed again while in flight");
    // Once the lease's own clock passes it, the delivery is claimable again.
    let later = mine(
        store
            .claim_due_leased(ms + 3_800_000, wall + 30_000, 30_000, 1000)
            .await
            .unwrap(),
    );
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].delivery_seq, held[0].delivery_seq);
    assert!(!store.record_attempt(&held[0], &ok(ms)).await.unwrap());
    assert!(store.record_attempt(&later[0], &ok(ms)).await.unwrap());
}

async fn twice(store: std::sync::Arc<SqlStore>) {
    events_suite(&store).await;
    events_suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_events() {
    authz_store::testsuite::on_sqlite(twice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_events() {
    authz_store::testsuite::on_postgres(twice).await;
}
