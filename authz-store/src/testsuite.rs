//! Backend-independent conformance suites: every [`EphemeralStore`] / [`DurableStore`]
//! implementation must pass them unchanged. All ids are fresh UUIDs, so a suite can run
//! repeatedly (and concurrently) against a shared database or Redis.
//!
//! They panic on the first failed expectation, like any test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::future::join_all;
use serde_json::json;

use crate::{
    AuditEntry, ClientRecord, ConsentRecord, ConsentStatus, Consumed, CustomerRecord, DurableStore,
    EphemeralStore, PasskeyRecord, RefreshTokenRecord, StoreError,
};

/// Concurrent callers used by the race checks.
const RACERS: usize = 8;

fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Real wall-clock seconds: Redis TTLs are relative to `now`, but staying near real time keeps
/// the suite meaningful for any backend that also consults its own clock.
fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1_700_000_000)
}

/// Exercises every [`EphemeralStore`] method.
pub async fn ephemeral_suite(store: &dyn EphemeralStore) {
    let now = wall_now();
    let ns = "suite";

    store.ping().await.expect("ping");

    // put / get, expiry judged by the caller's `now` (live while now < expires_at)
    let k = uid();
    assert_eq!(store.get(ns, &k, now).await.unwrap(), None, "unknown key");
    let tricky = "v|1|two \"quoted\" \n ünïcødé {\"json\":true}";
    store.put(ns, &k, tricky, now + 10, now).await.unwrap();
    assert_eq!(
        store.get(ns, &k, now).await.unwrap().as_deref(),
        Some(tricky)
    );
    assert_eq!(
        store.get(ns, &k, now + 9).await.unwrap().as_deref(),
        Some(tricky),
        "still live one second before expiry"
    );
    assert_eq!(
        store.get(ns, &k, now + 10).await.unwrap(),
        None,
        "expired at expires_at"
    );
    assert_eq!(
        store.get(ns, &k, now + 11).await.unwrap(),
        None,
        "expired after"
    );

    // namespaces are separate
    assert_eq!(store.get("suite-other", &k, now).await.unwrap(), None);
    store
        .put("suite-other", &k, "other", now + 10, now)
        .await
        .unwrap();
    assert_eq!(
        store.get(ns, &k, now).await.unwrap().as_deref(),
        Some(tricky)
    );
    assert_eq!(
        store.get("suite-other", &k, now).await.unwrap().as_deref(),
        Some("other")
    );
    store.delete("suite-other", &k).await.unwrap();

    // put replaces value and expiry
    store.put(ns, &k, "second", now + 100, now).await.unwrap();
    assert_eq!(
        store.get(ns, &k, now + 50).await.unwrap().as_deref(),
        Some("second")
    );

    // delete, and delete of an absent key
    store.delete(ns, &k).await.unwrap();
    assert_eq!(store.get(ns, &k, now).await.unwrap(), None);
    store.delete(ns, &k).await.unwrap();
    store.delete(ns, &uid()).await.unwrap();

    // take is single use
    let k = uid();
    store
        .put(ns, &k, "par-request", now + 60, now)
        .await
        .unwrap();
    assert_eq!(
        store.take(ns, &k, now).await.unwrap().as_deref(),
        Some("par-request")
    );
    assert_eq!(store.take(ns, &k, now).await.unwrap(), None, "second take");
    assert_eq!(
        store.get(ns, &k, now).await.unwrap(),
        None,
        "gone after take"
    );
    assert_eq!(
        store.take(ns, &uid(), now).await.unwrap(),
        None,
        "unknown take"
    );
    // take ignores an expired value
    let k = uid();
    store.put(ns, &k, "late", now + 10, now).await.unwrap();
    assert_eq!(
        store.take(ns, &k, now + 11).await.unwrap(),
        None,
        "expired take"
    );

    // insert_if_absent: the replay-cache primitive
    let k = uid();
    assert!(
        store
            .insert_if_absent(ns, &k, "first", now + 10, now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_if_absent(ns, &k, "again", now + 10, now)
            .await
            .unwrap(),
        "second insert of a live key"
    );
    assert!(
        !store
            .insert_if_absent(ns, &k, "again", now + 10, now + 9)
            .await
            .unwrap(),
        "still live one second before expiry"
    );
    assert_eq!(
        store.get(ns, &k, now).await.unwrap().as_deref(),
        Some("first")
    );
    assert!(
        store
            .insert_if_absent(ns, &k, "renewed", now + 30, now + 11)
            .await
            .unwrap(),
        "insert succeeds again once the old entry expired"
    );
    assert_eq!(
        store.get(ns, &k, now + 11).await.unwrap().as_deref(),
        Some("renewed")
    );
    assert!(
        !store
            .insert_if_absent(ns, &k, "x", now + 40, now + 12)
            .await
            .unwrap()
    );
    // ... and after an explicit put of an already live key
    let k = uid();
    store.put(ns, &k, "put", now + 10, now).await.unwrap();
    assert!(
        !store
            .insert_if_absent(ns, &k, "x", now + 10, now)
            .await
            .unwrap()
    );

    // consume: Fresh, then Replayed with the same value, Missing for unknown/expired
    let k = uid();
    store
        .put(ns, &k, "code-grant", now + 60, now)
        .await
        .unwrap();
    assert_eq!(
        store.consume(ns, &k, now).await.unwrap(),
        Consumed::Fresh("code-grant".into())
    );
    assert_eq!(
        store.consume(ns, &k, now + 1).await.unwrap(),
        Consumed::Replayed("code-grant".into())
    );
    assert_eq!(
        store.consume(ns, &k, now + 2).await.unwrap(),
        Consumed::Replayed("code-grant".into()),
        "stays replayed"
    );
    assert_eq!(
        store.consume(ns, &k, now + 60).await.unwrap(),
        Consumed::Missing,
        "a consumed record is forgotten at expiry"
    );
    assert_eq!(
        store.consume(ns, &uid(), now).await.unwrap(),
        Consumed::Missing
    );
    let k = uid();
    store.put(ns, &k, "stale", now + 10, now).await.unwrap();
    assert_eq!(
        store.consume(ns, &k, now + 11).await.unwrap(),
        Consumed::Missing,
        "expired before first use"
    );
    // a put resets the consumed flag
    let k = uid();
    store.put(ns, &k, "one", now + 60, now).await.unwrap();
    assert!(matches!(
        store.consume(ns, &k, now).await.unwrap(),
        Consumed::Fresh(_)
    ));
    store.put(ns, &k, "two", now + 60, now).await.unwrap();
    assert_eq!(
        store.consume(ns, &k, now).await.unwrap(),
        Consumed::Fresh("two".into())
    );

    // races: exactly one winner
    let k = uid();
    store.put(ns, &k, "contended", now + 60, now).await.unwrap();
    let taken = join_all((0..RACERS).map(|_| store.take(ns, &k, now))).await;
    let winners = taken
        .into_iter()
        .map(|r| r.expect("concurrent take"))
        .filter(Option::is_some)
        .count();
    assert_eq!(winners, 1, "concurrent take: exactly one Some");

    let k = uid();
    store.put(ns, &k, "code", now + 60, now).await.unwrap();
    let consumed = join_all((0..RACERS).map(|_| store.consume(ns, &k, now))).await;
    let consumed: Vec<Consumed> = consumed
        .into_iter()
        .map(|r| r.expect("concurrent consume"))
        .collect();
    let fresh = consumed
        .iter()
        .filter(|c| matches!(c, Consumed::Fresh(_)))
        .count();
    let replayed = consumed
        .iter()
        .filter(|c| **c == Consumed::Replayed("code".into()))
        .count();
    assert_eq!(
        fresh, 1,
        "concurrent consume: exactly one Fresh ({consumed:?})"
    );
    assert_eq!(
        replayed,
        RACERS - 1,
        "the others see Replayed ({consumed:?})"
    );

    let k = uid();
    let inserted =
        join_all((0..RACERS).map(|_| store.insert_if_absent(ns, &k, "jti", now + 60, now)))
            .await
            .into_iter()
            .map(|r| r.expect("concurrent insert_if_absent"))
            .filter(|b| *b)
            .count();
    assert_eq!(inserted, 1, "concurrent insert_if_absent: exactly one true");

    // the same race on a key whose previous entry has expired
    let k = uid();
    store.put(ns, &k, "old", now + 5, now).await.unwrap();
    let inserted =
        join_all((0..RACERS).map(|_| store.insert_if_absent(ns, &k, "new", now + 60, now + 10)))
            .await
            .into_iter()
            .map(|r| r.expect("concurrent insert_if_absent over expired"))
            .filter(|b| *b)
            .count();
    assert_eq!(inserted, 1, "over an expired entry: exactly one true");
}

fn customer(username: &str) -> CustomerRecord {
    CustomerRecord {
        id: uid(),
        username: username.to_owned(),
        display_name: "Wanjiku Kamau".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        totp_secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into(),
        totp_last_step: 0,
        created_at: wall_now(),
    }
}

fn consent(client_id: &str, customer_id: Option<&str>, created_at: i64) -> ConsentRecord {
    ConsentRecord {
        id: uid(),
        client_id: client_id.to_owned(),
        customer_id: customer_id.map(str::to_owned),
        kind: "account-access".into(),
        scopes: "openid accounts".into(),
        status: ConsentStatus::AwaitingAuthorisation,
        details: json!({"permissions": ["ReadAccountsBasic", "ReadBalances"], "n": 2}),
        created_at,
        updated_at: created_at,
        expires_at: Some(created_at + 90 * 86_400),
    }
}

fn audit(consent_id: &str, at: i64, action: &str) -> AuditEntry {
    AuditEntry {
        consent_id: consent_id.to_owned(),
        at,
        actor: "system".into(),
        action: action.to_owned(),
        detail: format!("{action} by suite"),
    }
}

fn refresh(client_id: &str, consent_id: Option<&str>, now: i64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        digest: uid(),
        client_id: client_id.to_owned(),
        consent_id: consent_id.map(str::to_owned),
        subject: uid(),
        scope: "openid accounts".into(),
        cnf: json!({"x5t#S256": "UaDq5QJR-test"}),
        auth: json!({"acr": "urn:wekeza:sca", "amr": ["pwd", "otp"], "auth_time": now}),
        created_at: now,
        expires_at: now + 3600,
        revoked_at: None,
    }
}

/// Exercises every [`DurableStore`] method.
pub async fn durable_suite(store: &dyn DurableStore) {
    let now = wall_now();
    store.ping().await.expect("ping");

    // clients
    let client_id = format!("client-{}", uid());
    assert!(store.find_client(&client_id).await.unwrap().is_none());
    let mut client = ClientRecord {
        client_id: client_id.clone(),
        metadata: json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "redirect_uris": ["https://tpp.example/cb"],
            "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]},
            "scope": "openid accounts payments",
        }),
        created_at: now,
        updated_at: now,
    };
    store.upsert_client(&client).await.unwrap();
    assert_eq!(
        store.find_client(&client_id).await.unwrap().as_ref(),
        Some(&client)
    );
    let created = client.created_at;
    client.metadata["scope"] = json!("openid accounts");
    client.created_at = now + 50;
    client.updated_at = now + 50;
    store.upsert_client(&client).await.unwrap();
    let found = store
        .find_client(&client_id)
        .await
        .unwrap()
        .expect("client after update");
    assert_eq!(found.metadata, client.metadata, "metadata replaced");
    assert_eq!(found.updated_at, now + 50);
    assert_eq!(
        found.created_at, created,
        "created_at kept from first registration"
    );

    // customers
    let username = format!("user-{}", uid());
    let mut cust = customer(&username);
    assert!(store.find_customer(&cust.id).await.unwrap().is_none());
    assert!(
        store
            .find_customer_by_username(&username)
            .await
            .unwrap()
            .is_none()
    );
    store.upsert_customer(&cust).await.unwrap();
    assert_eq!(
        store.find_customer(&cust.id).await.unwrap().as_ref(),
        Some(&cust)
    );
    assert_eq!(
        store
            .find_customer_by_username(&username)
            .await
            .unwrap()
            .as_ref(),
        Some(&cust)
    );
    cust.display_name = "W. Kamau".into();
    store.upsert_customer(&cust).await.unwrap();
    assert_eq!(
        store
            .find_customer(&cust.id)
            .await
            .unwrap()
            .map(|c| c.display_name),
        Some("W. Kamau".into())
    );
    let clash = customer(&username);
    assert!(
        matches!(
            store.upsert_customer(&clash).await,
            Err(StoreError::Conflict(_))
        ),
        "a username belongs to one customer"
    );
    assert!(store.find_customer(&clash.id).await.unwrap().is_none());

    // TOTP steps only move forward
    assert!(store.advance_totp_step(&cust.id, 1000).await.unwrap());
    assert!(
        !store.advance_totp_step(&cust.id, 1000).await.unwrap(),
        "same step twice"
    );
    assert!(
        !store.advance_totp_step(&cust.id, 999).await.unwrap(),
        "older step"
    );
    assert!(store.advance_totp_step(&cust.id, 1001).await.unwrap());
    assert_eq!(
        store
            .find_customer(&cust.id)
            .await
            .unwrap()
            .map(|c| c.totp_last_step),
        Some(1001)
    );
    assert!(
        !store.advance_totp_step(&uid(), 5).await.unwrap(),
        "unknown customer"
    );
    // re-seeding the customer does not rewind the step
    store.upsert_customer(&cust).await.unwrap();
    assert_eq!(
        store
            .find_customer(&cust.id)
            .await
            .unwrap()
            .map(|c| c.totp_last_step),
        Some(1001)
    );
    let wins = join_all((0..RACERS).map(|_| store.advance_totp_step(&cust.id, 2000)))
        .await
        .into_iter()
        .map(|r| r.expect("concurrent advance_totp_step"))
        .filter(|b| *b)
        .count();
    assert_eq!(wins, 1, "one TOTP code, one login");

    // consents and their audit trail
    let c1 = consent(&client_id, None, now);
    let a1 = audit(&c1.id, now, "created");
    store.insert_consent(&c1, &a1).await.unwrap();
    assert_eq!(
        store.find_consent(&c1.id).await.unwrap().as_ref(),
        Some(&c1)
    );
    assert_eq!(store.list_audit(&c1.id).await.unwrap(), vec![a1.clone()]);
    assert!(store.find_consent(&uid()).await.unwrap().is_none());
    assert!(store.list_audit(&uid()).await.unwrap().is_empty());

    // a failed insert leaves no audit line behind (one transaction)
    let dup_audit = audit(&c1.id, now, "created-again");
    assert!(
        store.insert_consent(&c1, &dup_audit).await.is_err(),
        "duplicate id"
    );
    assert_eq!(store.list_audit(&c1.id).await.unwrap(), vec![a1.clone()]);

    // transition refused from a wrong state: nothing changes, no audit
    let wrong = audit(&c1.id, now + 1, "revoked");
    assert!(
        !store
            .transition_consent(
                &c1.id,
                &[ConsentStatus::Authorised],
                ConsentStatus::Revoked,
                &wrong
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .transition_consent(&c1.id, &[], ConsentStatus::Revoked, &wrong)
            .await
            .unwrap(),
        "no allowed source state"
    );
    let unknown = uid();
    assert!(
        !store
            .transition_consent(
                &unknown,
                &[ConsentStatus::AwaitingAuthorisation],
                ConsentStatus::Authorised,
                &audit(&unknown, now, "authorised"),
            )
            .await
            .unwrap(),
        "unknown consent"
    );
    assert_eq!(
        store.find_consent(&c1.id).await.unwrap().map(|c| c.status),
        Some(ConsentStatus::AwaitingAuthorisation)
    );
    assert_eq!(store.list_audit(&c1.id).await.unwrap(), vec![a1.clone()]);

    // allowed transition: status, updated_at and one audit line
    let a2 = AuditEntry {
        actor: format!("customer:{}", cust.id),
        ..audit(&c1.id, now + 2, "authorised")
    };
    assert!(
        store
            .transition_consent(
                &c1.id,
                &[
                    ConsentStatus::Rejected,
                    ConsentStatus::AwaitingAuthorisation
                ],
                ConsentStatus::Authorised,
                &a2,
            )
            .await
            .unwrap()
    );
    let after = store.find_consent(&c1.id).await.unwrap().expect("consent");
    assert_eq!(after.status, ConsentStatus::Authorised);
    assert_eq!(after.updated_at, now + 2);
    assert_eq!(
        store.list_audit(&c1.id).await.unwrap(),
        vec![a1.clone(), a2.clone()]
    );

    // racing revocations: one succeeds, one audit line
    let wins = join_all((0..RACERS).map(|i| {
        let entry = audit(&c1.id, now + 3, &format!("revoked-{i}"));
        let id = c1.id.clone();
        async move {
            store
                .transition_consent(
                    &id,
                    &[ConsentStatus::Authorised],
                    ConsentStatus::Revoked,
                    &entry,
                )
                .await
        }
    }))
    .await
    .into_iter()
    .map(|r| r.expect("concurrent transition"))
    .filter(|b| *b)
    .count();
    assert_eq!(wins, 1, "exactly one transition wins");
    let trail = store.list_audit(&c1.id).await.unwrap();
    assert_eq!(trail.len(), 3, "one audit line per successful transition");
    assert!(trail[2].action.starts_with("revoked-"));
    assert_eq!(
        store.find_consent(&c1.id).await.unwrap().map(|c| c.status),
        Some(ConsentStatus::Revoked)
    );

    // update_consent: sets the deciding customer and the details in the guarded update,
    // and changes nothing when the state does not allow it
    let other_customer = uid();
    let upd = consent(&client_id, None, now);
    store
        .insert_consent(&upd, &audit(&upd.id, now, "created"))
        .await
        .unwrap();
    let picked = json!({"permissions": ["ReadBalances"], "account_ids": ["acc-1"]});
    assert!(
        !store
            .update_consent(
                &upd.id,
                &[ConsentStatus::Authorised],
                ConsentStatus::Revoked,
                Some(other_customer.as_str()),
                Some(&picked),
                &audit(&upd.id, now + 1, "wrong-state"),
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_consent(&upd.id).await.unwrap().as_ref(),
        Some(&upd)
    );
    assert!(
        store
            .update_consent(
                &upd.id,
                &[ConsentStatus::AwaitingAuthorisation],
                ConsentStatus::Authorised,
                Some(other_customer.as_str()),
                Some(&picked),
                &audit(&upd.id, now + 1, "authorised"),
            )
            .await
            .unwrap()
    );
    let upd_after = store.find_consent(&upd.id).await.unwrap().expect("consent");
    assert_eq!(
        upd_after.customer_id.as_deref(),
        Some(other_customer.as_str())
    );
    assert_eq!(upd_after.details, picked);
    assert_eq!(upd_after.status, ConsentStatus::Authorised);
    assert_eq!(store.list_audit(&upd.id).await.unwrap().len(), 2);

    // an audit line for another consent is refused
    let other = uid();
    assert!(
        store
            .transition_consent(
                &c1.id,
                &[ConsentStatus::Revoked],
                ConsentStatus::Expired,
                &audit(&other, now, "expired"),
            )
            .await
            .is_err()
    );

    // listing by customer, oldest first; other customers' consents excluded
    let c2 = consent(&client_id, Some(&cust.id), now + 10);
    let c3 = ConsentRecord {
        expires_at: None,
        status: ConsentStatus::Authorised,
        details: json!(null),
        ..consent(&client_id, Some(&cust.id), now + 5)
    };
    let c4 = consent(&client_id, Some(&uid()), now);
    for c in [&c2, &c3, &c4] {
        store
            .insert_consent(c, &audit(&c.id, c.created_at, "created"))
            .await
            .unwrap();
    }
    assert_eq!(
        store.list_consents_for_customer(&cust.id).await.unwrap(),
        vec![c3.clone(), c2.clone()]
    );
    assert!(
        store
            .list_consents_for_customer(&uid())
            .await
            .unwrap()
            .is_empty()
    );

    // refresh tokens
    let r1 = refresh(&client_id, Some(&c2.id), now);
    let r2 = refresh(&client_id, Some(&c2.id), now);
    let r3 = refresh(&client_id, Some(&c2.id), now);
    let r_other = refresh(&client_id, Some(&c3.id), now);
    let r_none = refresh(&client_id, None, now);
    for r in [&r1, &r2, &r3, &r_other, &r_none] {
        store.insert_refresh_token(r).await.unwrap();
    }
    assert_eq!(
        store.find_refresh_token(&r1.digest).await.unwrap().as_ref(),
        Some(&r1)
    );
    assert_eq!(
        store
            .find_refresh_token(&r_none.digest)
            .await
            .unwrap()
            .as_ref(),
        Some(&r_none)
    );
    assert!(store.find_refresh_token(&uid()).await.unwrap().is_none());
    assert!(
        store.insert_refresh_token(&r1).await.is_err(),
        "duplicate digest"
    );

    store
        .revoke_refresh_token(&r1.digest, now + 7)
        .await
        .unwrap();
    store
        .revoke_refresh_token(&r1.digest, now + 8)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_refresh_token(&r1.digest)
            .await
            .unwrap()
            .and_then(|r| r.revoked_at),
        Some(now + 7),
        "first revocation time kept"
    );
    store.revoke_refresh_token(&uid(), now).await.unwrap();

    assert_eq!(
        store
            .revoke_refresh_tokens_for_consent(&c2.id, now + 9)
            .await
            .unwrap(),
        2,
        "only the still-live tokens of that consent"
    );
    for r in [&r2, &r3] {
        assert_eq!(
            store
                .find_refresh_token(&r.digest)
                .await
                .unwrap()
                .and_then(|r| r.revoked_at),
            Some(now + 9)
        );
    }
    assert_eq!(
        store
            .find_refresh_token(&r1.digest)
            .await
            .unwrap()
            .and_then(|r| r.revoked_at),
        Some(now + 7)
    );
    assert_eq!(
        store
            .find_refresh_token(&r_other.digest)
            .await
            .unwrap()
            .and_then(|r| r.revoked_at),
        None,
        "another consent's token untouched"
    );
    assert_eq!(
        store
            .revoke_refresh_tokens_for_consent(&c2.id, now + 10)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .revoke_refresh_tokens_for_consent(&uid(), now)
            .await
            .unwrap(),
        0
    );

    // access-token revocation list
    let jti = uid();
    assert!(!store.is_access_token_revoked(&jti).await.unwrap());
    store.revoke_access_token(&jti, now + 300).await.unwrap();
    assert!(store.is_access_token_revoked(&jti).await.unwrap());
    store.revoke_access_token(&jti, now + 100).await.unwrap();
    assert!(
        store.is_access_token_revoked(&jti).await.unwrap(),
        "idempotent"
    );
    assert!(!store.is_access_token_revoked(&uid()).await.unwrap());

    passkey_suite(store).await;
}

fn passkey(customer_id: &str, name: &str, created_at: i64) -> PasskeyRecord {
    PasskeyRecord {
        credential_id: uid(),
        customer_id: customer_id.to_owned(),
        name: name.to_owned(),
        credential: json!({"cred": {"cred_id": "abc", "counter": 0, "backup_state": false}}),
        sign_count: 0,
        created_at,
        last_used_at: None,
    }
}

/// Passkeys: several per customer, counter-guarded use, rename and removal scoped to
/// their owner. (Called from [`durable_suite`].)
pub async fn passkey_suite(store: &dyn DurableStore) {
    let now = wall_now();
    let alice = uid();
    let bob = uid();
    assert!(store.list_passkeys(&alice).await.unwrap().is_empty());
    assert!(store.find_passkey(&uid()).await.unwrap().is_none());

    let p2 = passkey(&alice, "Phone", now + 5);
    let p1 = passkey(&alice, "Passkey added \"today\" ünï", now);
    let pb = passkey(&bob, "Bob's key", now);
    for p in [&p2, &p1, &pb] {
        store.insert_passkey(p).await.unwrap();
    }
    assert_eq!(
        store.list_passkeys(&alice).await.unwrap(),
        vec![p1.clone(), p2.clone()],
        "oldest first, only the customer's own"
    );
    assert_eq!(
        store.find_passkey(&pb.credential_id).await.unwrap(),
        Some(pb.clone())
    );
    // a credential id is registered once, for anyone
    let dup = PasskeyRecord {
        customer_id: bob.clone(),
        ..p1.clone()
    };
    assert!(matches!(
        store.insert_passkey(&dup).await,
        Err(StoreError::Conflict(_))
    ));

    // use with a counter: forward only
    let c5 = json!({"cred": {"counter": 5}});
    assert!(
        store
            .record_passkey_use(&p1.credential_id, &c5, 5, now + 10)
            .await
            .unwrap()
    );
    let got = store
        .find_passkey(&p1.credential_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.sign_count, got.last_used_at, got.credential.clone()),
        (5, Some(now + 10), c5.clone())
    );
    for stale in [5, 4, 0] {
        assert!(
            !store
                .record_passkey_use(&p1.credential_id, &json!({"stale": stale}), stale, now + 11)
                .await
                .unwrap(),
            "counter {stale} after 5 is refused"
        );
    }
    assert_eq!(
        store
            .find_passkey(&p1.credential_id)
            .await
            .unwrap()
            .unwrap(),
        got,
        "a refused use changes nothing"
    );
    // an authenticator without a counter (always 0) may be used repeatedly
    for t in [now + 12, now + 13] {
        assert!(
            store
                .record_passkey_use(&p2.credential_id, &json!({"n": t}), 0, t)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        store
            .find_passkey(&p2.credential_id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(now + 13)
    );
    assert!(
        !store
            .record_passkey_use(&uid(), &json!({}), 1, now)
            .await
            .unwrap()
    );

    // concurrent uses with the same new counter: exactly one wins
    let raced = json!({"race": true});
    let results = join_all(
        (0..RACERS).map(|_| store.record_passkey_use(&p1.credential_id, &raced, 9, now + 20)),
    )
    .await;
    assert_eq!(
        results.into_iter().filter(|r| *r.as_ref().unwrap()).count(),
        1
    );

    // rename and delete only by the owner
    assert!(
        !store
            .rename_passkey(&bob, &p1.credential_id, "stolen")
            .await
            .unwrap()
    );
    assert!(
        store
            .rename_passkey(&alice, &p1.credential_id, "Laptop")
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .find_passkey(&p1.credential_id)
            .await
            .unwrap()
            .unwrap()
            .name,
        "Laptop"
    );
    assert!(!store.delete_passkey(&bob, &p1.credential_id).await.unwrap());
    assert!(
        store
            .delete_passkey(&alice, &p1.credential_id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_passkey(&alice, &p1.credential_id)
            .await
            .unwrap()
    );
    assert!(
        store
            .find_passkey(&p1.credential_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list_passkeys(&alice).await.unwrap().len(), 1);
    assert_eq!(store.list_passkeys(&bob).await.unwrap(), vec![pb]);
}

/// Runs `suite` on a fresh SQLite database file, removed afterwards.
pub async fn on_sqlite<F, Fut>(suite: F)
where
    F: FnOnce(std::sync::Arc<crate::SqlStore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let path = std::env::temp_dir().join(format!("wekeza-suite-{}.db", uid()));
    let url = format!("sqlite://{}", path.display());
    let store = std::sync::Arc::new(
        crate::SqlStore::connect(&url, None)
            .await
            .expect("connect sqlite"),
    );
    suite(store.clone()).await;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Runs `suite` on a fresh schema of the PostgreSQL database `WEKEZA_TEST_POSTGRES_URL`
/// names (CI sets it), dropped afterwards even when the suite panics; skipped, with a line
/// on stderr, when the variable is not set.
pub async fn on_postgres<F, Fut>(suite: F)
where
    F: FnOnce(std::sync::Arc<crate::SqlStore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::FutureExt;
    use sqlx::{Connection, Executor};
    let Ok(url) = std::env::var("WEKEZA_TEST_POSTGRES_URL") else {
        eprintln!("skipped PostgreSQL backend: WEKEZA_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!("wekeza_suite_{}", uid());
    let outcome = std::panic::AssertUnwindSafe(async {
        let store = std::sync::Arc::new(
            crate::SqlStore::connect(&url, Some(&schema))
                .await
                .expect("connect postgres"),
        );
        suite(store.clone()).await;
        store.close().await;
    })
    .catch_unwind()
    .await;
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("admin connection");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .await
    .expect("drop schema");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
