//! Conformance suite for [`AuthStore`] (both SQL backends run it unchanged, repeatedly:
//! every id is fresh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::join_all;
use serde_json::json;

use crate::{
    AuditEntry, AuthEvent, AuthStore, BackoffPolicy, ConsentRecord, ConsentStatus, CustomerRecord,
    DurableStore,
};

fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

const POLICY: BackoffPolicy = BackoffPolicy {
    threshold: 3,
    base_secs: 60,
    cap_secs: 200,
    quiet_secs: 1000,
};

pub async fn auth_suite<S: DurableStore + AuthStore>(store: &S) {
    let now = 1_800_000_000;
    let id = format!("cust-{}", uid());
    let c = CustomerRecord {
        id: id.clone(),
        username: format!("u-{}", uid()),
        display_name: "Suite".into(),
        password_hash: "$argon2id$x".into(),
        totp_secret: "sealed-1".into(),
        totp_last_step: 500,
        created_at: now,
    };
    store.upsert_customer(&c).await.unwrap();

    // secrets: listed, swapped only from the expected value
    let all = store.list_totp_secrets().await.unwrap();
    assert!(all.contains(&(id.clone(), "sealed-1".into())));
    assert!(!store.swap_totp_secret(&id, "other", "x").await.unwrap());
    assert!(
        store
            .swap_totp_secret(&id, "sealed-1", "sealed-2")
            .await
            .unwrap()
    );
    let got = store.find_customer(&id).await.unwrap().unwrap();
    assert_eq!(got.totp_secret, "sealed-2");

    // enrolment: secret, step (set, even backwards) and codes in one go
    let codes: Vec<String> = (0..3).map(|i| format!("d{i}")).collect();
    assert!(
        store
            .replace_totp(&id, "sealed-3", 100, &codes, now)
            .await
            .unwrap()
    );
    let got = store.find_customer(&id).await.unwrap().unwrap();
    assert_eq!(
        (got.totp_secret.as_str(), got.totp_last_step),
        ("sealed-3", 100)
    );
    assert!(
        !store
            .replace_totp("nobody", "s", 1, &codes, now)
            .await
            .unwrap()
    );
    assert_eq!(store.recovery_codes_left(&id).await.unwrap(), 3);

    // recovery codes: single use, even when raced; another customer's code is no code
    assert!(!store.use_recovery_code("nobody", "d0", now).await.unwrap());
    let race = join_all((0..8).map(|_| store.use_recovery_code(&id, "d0", now))).await;
    assert_eq!(race.iter().filter(|r| matches!(r, Ok(true))).count(), 1);
    assert!(!store.use_recovery_code(&id, "d0", now).await.unwrap());
    assert!(!store.use_recovery_code(&id, "unknown", now).await.unwrap());
    assert_eq!(store.recovery_codes_left(&id).await.unwrap(), 2);
    // replacing invalidates the old ones
    store
        .replace_recovery_codes(&id, &["n1".into()], now)
        .await
        .unwrap();
    assert!(!store.use_recovery_code(&id, "d1", now).await.unwrap());
    assert!(store.use_recovery_code(&id, "n1", now).await.unwrap());

    // back-off: threshold failures lock for base, then doubling, capped; reset forgets
    let s = uid();
    assert_eq!(store.throttle_locked_until(&s, now).await.unwrap(), None);
    assert_eq!(
        store.throttle_failure(&s, now, &POLICY).await.unwrap(),
        None
    );
    assert_eq!(
        store.throttle_failure(&s, now, &POLICY).await.unwrap(),
        None
    );
    assert_eq!(
        store.throttle_failure(&s, now, &POLICY).await.unwrap(),
        Some(now + 60)
    );
    assert_eq!(
        store.throttle_locked_until(&s, now + 59).await.unwrap(),
        Some(now + 60)
    );
    assert_eq!(
        store.throttle_locked_until(&s, now + 60).await.unwrap(),
        None
    );
    let t = now + 61;
    for _ in 0..2 {
        assert_eq!(store.throttle_failure(&s, t, &POLICY).await.unwrap(), None);
    }
    assert_eq!(
        store.throttle_failure(&s, t, &POLICY).await.unwrap(),
        Some(t + 120),
        "second lock doubles"
    );
    let t = t + 121;
    for _ in 0..2 {
        store.throttle_failure(&s, t, &POLICY).await.unwrap();
    }
    assert_eq!(
        store.throttle_failure(&s, t, &POLICY).await.unwrap(),
        Some(t + 200),
        "capped"
    );
    // a burst past the threshold earns one lock
    let s2 = uid();
    let burst = join_all((0..6).map(|_| store.throttle_failure(&s2, now, &POLICY))).await;
    assert_eq!(
        burst.iter().filter(|r| matches!(r, Ok(Some(_)))).count(),
        1,
        "{burst:?}"
    );
    // a quiet period starts the count again
    let s3 = uid();
    store.throttle_failure(&s3, now, &POLICY).await.unwrap();
    store.throttle_failure(&s3, now, &POLICY).await.unwrap();
    assert_eq!(
        store
            .throttle_failure(&s3, now + 1000, &POLICY)
            .await
            .unwrap(),
        None
    );
    store.throttle_reset(&s).await.unwrap();
    assert_eq!(store.throttle_locked_until(&s, t + 1).await.unwrap(), None);

    // sign-in audit: newest first, limited, per customer
    for (i, outcome) in ["failure", "success", "failure"].iter().enumerate() {
        store
            .insert_auth_event(&AuthEvent {
                customer_id: Some(id.clone()),
                at: now + i as i64,
                method: "totp".into(),
                outcome: (*outcome).into(),
                reason: "r".into(),
                channel: "dashboard".into(),
                client_id: None,
            })
            .await
            .unwrap();
    }
    store
        .insert_auth_event(&AuthEvent {
            customer_id: None,
            at: now,
            method: "password".into(),
            outcome: "failure".into(),
            reason: "unknown_user".into(),
            channel: "interaction".into(),
            client_id: Some("c1".into()),
        })
        .await
        .unwrap();
    let ev = store.list_auth_events(&id, 2).await.unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].at, now + 2);
    assert_eq!(ev[1].outcome, "success");

    // consent last use: recorded, only forwards
    let cid = uid();
    let consent = ConsentRecord {
        id: cid.clone(),
        client_id: "c1".into(),
        customer_id: Some(id.clone()),
        kind: "oauth".into(),
        scopes: "openid".into(),
        status: ConsentStatus::Authorised,
        details: json!({}),
        created_at: now,
        updated_at: now,
        expires_at: None,
    };
    let audit = AuditEntry {
        consent_id: cid.clone(),
        at: now,
        actor: "system".into(),
        action: "created".into(),
        detail: String::new(),
    };
    store.insert_consent(&consent, &audit).await.unwrap();
    assert_eq!(store.consent_last_used(&cid).await.unwrap(), None);
    assert!(store.record_consent_use(&cid, now + 10).await.unwrap());
    assert!(!store.record_consent_use(&cid, now + 5).await.unwrap());
    assert_eq!(store.consent_last_used(&cid).await.unwrap(), Some(now + 10));
    assert!(!store.record_consent_use("nothing", now).await.unwrap());
    assert_eq!(store.consent_last_used("nothing").await.unwrap(), None);
}
