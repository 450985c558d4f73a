//! Backend-independent suite for [`RegistrationStore`]: every SQL backend runs it
//! unchanged (`tests/backends.rs`). Fresh ids, so it can run repeatedly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::{
    AuditEntry, ClientRecord, ConsentRecord, ConsentStatus, DurableStore, RefreshTokenRecord,
    RegistrationRecord, StoreError,
};

fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub async fn registration_suite(store: &dyn DurableStore) {
    let regs = store
        .registrations()
        .expect("backend has registration storage");
    let now = 1_700_000_000;
    let id = format!("dcr-{}", uid());
    let client = ClientRecord {
        client_id: id.clone(),
        metadata: json!({"client_id": id, "client_name": "A"}),
        created_at: now,
        updated_at: now,
    };
    let reg = RegistrationRecord {
        client_id: id.clone(),
        token_digest: "d1".into(),
        software_id: "sw".into(),
        org_id: "org".into(),
        metadata: json!({"jwks_uri": "https://tpp.example/jwks"}),
        created_at: now,
        updated_at: now,
    };
    assert_eq!(regs.find_registration(&id).await.unwrap(), None);
    regs.insert_registration(&client, &reg).await.unwrap();
    assert_eq!(
        regs.find_registration(&id).await.unwrap(),
        Some(reg.clone())
    );
    assert_eq!(store.find_client(&id).await.unwrap(), Some(client.clone()));
    // Registration never overwrites an existing client, and leaves nothing half-written.
    let mut other = reg.clone();
    other.token_digest = "dX".into();
    assert!(matches!(
        regs.insert_registration(&client, &other).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        regs.find_registration(&id)
            .await
            .unwrap()
            .unwrap()
            .token_digest,
        "d1"
    );

    // Update: guarded by the current token digest; rotation replaces it.
    let mut c2 = client.clone();
    c2.metadata = json!({"client_id": id, "client_name": "B"});
    c2.updated_at = now + 5;
    let mut r2 = reg.clone();
    r2.token_digest = "d2".into();
    r2.updated_at = now + 5;
    assert!(!regs.update_registration(&c2, &r2, "wrong").await.unwrap());
    assert_eq!(store.find_client(&id).await.unwrap(), Some(client.clone()));
    assert!(regs.update_registration(&c2, &r2, "d1").await.unwrap());
    assert_eq!(store.find_client(&id).await.unwrap(), Some(c2.clone()));
    assert_eq!(regs.find_registration(&id).await.unwrap(), Some(r2.clone()));
    // The old digest no longer works.
    assert!(!regs.update_registration(&c2, &r2, "d1").await.unwrap());

    // A consent per live and final state, and refresh tokens.
    let mut consents = Vec::new();
    for status in [
        ConsentStatus::Authorised,
        ConsentStatus::AwaitingAuthorisation,
        ConsentStatus::Rejected,
    ] {
        let c = ConsentRecord {
            id: uid(),
            client_id: id.clone(),
            customer_id: None,
            kind: "oauth".into(),
            scopes: "openid".into(),
            status,
            details: json!({}),
            created_at: now,
            updated_at: now,
            expires_at: None,
        };
        let a = AuditEntry {
            consent_id: c.id.clone(),
            at: now,
            actor: "system".into(),
            action: "created".into(),
            detail: String::new(),
        };
        store.insert_consent(&c, &a).await.unwrap();
        consents.push(c);
    }
    let rt = RefreshTokenRecord {
        digest: uid(),
        client_id: id.clone(),
        consent_id: Some(consents[0].id.clone()),
        subject: "s".into(),
        scope: "openid".into(),
        cnf: json!({}),
        auth: json!({}),
        created_at: now,
        expires_at: now + 1000,
        revoked_at: None,
    };
    store.insert_refresh_token(&rt).await.unwrap();

    // Logos: set, replaced in place, digest without the bytes.
    let logos = store.logos().expect("backend has logo storage");
    assert_eq!(logos.find_logo(&id).await.unwrap(), None);
    let first = logos
        .put_logo(&id, "image/png", b"first", now)
        .await
        .unwrap();
    assert_eq!(first.sha256.len(), 64);
    let second = logos
        .put_logo(&id, "image/jpeg", b"second bytes", now + 1)
        .await
        .unwrap();
    let found = logos.find_logo(&id).await.unwrap().unwrap();
    assert_eq!(found, second);
    assert_eq!(found.bytes, b"second bytes");
    assert_ne!(first.sha256, second.sha256);
    assert_eq!(
        logos.logo_digest(&id).await.unwrap(),
        Some(second.sha256.clone())
    );

    // Delete: wrong digest changes nothing.
    assert_eq!(
        regs.delete_registration(&id, "d1", "client:x", now + 9)
            .await
            .unwrap(),
        None
    );
    assert!(store.find_client(&id).await.unwrap().is_some());
    let done = regs
        .delete_registration(&id, "d2", &format!("client:{id}"), now + 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.consents_revoked, 2);
    assert_eq!(done.refresh_tokens_revoked, 1);
    assert_eq!(store.find_client(&id).await.unwrap(), None);
    assert_eq!(regs.find_registration(&id).await.unwrap(), None);
    // Deregistration takes the logo with the client (nothing is served for it after).
    assert_eq!(logos.find_logo(&id).await.unwrap(), None);
    assert!(!logos.delete_logo(&id).await.unwrap());
    let statuses: Vec<ConsentStatus> = {
        let mut v = Vec::new();
        for c in &consents {
            v.push(store.find_consent(&c.id).await.unwrap().unwrap().status);
        }
        v
    };
    assert_eq!(
        statuses,
        [
            ConsentStatus::Revoked,
            ConsentStatus::Revoked,
            ConsentStatus::Rejected
        ]
    );
    let trail = store.list_audit(&consents[0].id).await.unwrap();
    assert_eq!(trail.last().unwrap().action, "revoked");
    assert_eq!(trail.last().unwrap().actor, format!("client:{id}"));
    assert_eq!(
        store
            .find_refresh_token(&rt.digest)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(now + 10)
    );
    // Deleting twice finds nothing.
    assert_eq!(
        regs.delete_registration(&id, "d2", "x", now + 11)
            .await
            .unwrap(),
        None
    );
}
