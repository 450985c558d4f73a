//! Event notifications (issue 8): the transactional outbox, subscriptions and deliveries.
//!
//! * [`enqueue_event`] writes an event and its delivery rows on a connection the caller
//!   already holds inside its own transaction, so an event exists exactly when the change
//!   it reports was committed. Consent changes call it from `update_consent`.
//! * Deliveries are claimed by a lease (`lease_until_ms`) taken in one statement; on
//!   PostgreSQL the candidate rows are locked `FOR UPDATE SKIP LOCKED`, so several
//!   dispatchers never claim the same delivery at once. Only the oldest unfinished
//!   delivery of a subscription is claimable (order per subscription by event time).
//! * A dispatcher that dies mid-delivery leaves a lease that simply runs out; the delivery
//!   is claimed again (at-least-once; receivers de-duplicate by `jti` = event id).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::sql::{Backend, SqlStore, corrupt};
use crate::{ConsentStatus, StoreError, StoreResult};

/// UK OB: a resource (payment, consent...) changed; the TPP reads it again.
pub const EVENT_RESOURCE_UPDATE: &str = "urn:uk:org:openbanking:events:resource-update";
/// UK OB: the customer (or the TPP, or the bank) revoked the consent.
pub const EVENT_CONSENT_REVOKED: &str =
    "urn:uk:org:openbanking:events:consent-authorization-revoked";
/// UK OB: the accounts an account-access consent covers changed.
pub const EVENT_LINKED_ACCOUNT_UPDATE: &str =
    "urn:uk:org:openbanking:events:account-access-consent-linked-account-update";
/// Every event type this platform emits (subscriptions may only ask for these).
pub const EVENT_TYPES: &[&str] = &[
    EVENT_RESOURCE_UPDATE,
    EVENT_CONSENT_REVOKED,
    EVENT_LINKED_ACCOUNT_UPDATE,
    crate::sql_alerts::EVENT_TRANSACTION_CREATED,
    crate::sql_alerts::EVENT_BALANCE_THRESHOLD,
];

/// An event to write into the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The TPP (client id) the event is for: the SET's `aud`. Only its subscriptions get it.
    pub client_id: String,
    /// The consent under which the TPP may see the subject. Events about anything but
    /// the consent itself are dropped once that consent is no longer authorised.
    pub consent_id: Option<String>,
    /// One of [`EVENT_TYPES`].
    pub event_type: String,
    /// Resource id and type (`http://openbanking.org.uk/rid`, `…/rty`).
    pub rid: String,
    pub rty: String,
    /// Path of the resource under the resource server's base URL (`…/rlk`, `sub`).
    pub link: String,
    /// Extra members of the event object (e.g. `{"reason": "…"}`); `{}` if none.
    pub detail: serde_json::Value,
    /// Groups the events of one business transaction (the SET's `txn`).
    pub txn: String,
    /// Time of event, unix seconds (`toe`).
    pub toe: i64,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The event id: the SET's `jti`, the same for every attempt and subscription.
    pub id: String,
    pub seq: i64,
    pub event: NewEvent,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventSubscription {
    pub id: String,
    pub client_id: String,
    /// `None`: the TPP polls.
    pub callback_url: Option<String>,
    pub version: String,
    /// Empty = every type.
    pub event_types: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl EventSubscription {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

/// A delivery the caller holds the lease on.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery_seq: i64,
    pub subscription_id: String,
    pub callback_url: String,
    pub event: EventRecord,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Start of the retry horizon (first enqueue, or the last manual redelivery), ms.
    pub since_ms: i64,
    /// The lease this claim holds; results are recorded only under it.
    pub lease_until_ms: i64,
    /// Status of `event.consent_id` now, if the event names a consent.
    pub consent_status: Option<ConsentStatus>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Acknowledged through polling.
    Acked,
    /// Given up after the retry horizon.
    Dead,
    /// Not sent: the consent that allowed it ended first.
    Suppressed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Acked => "acked",
            Self::Dead => "dead",
            Self::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "acked" => Self::Acked,
            "dead" => Self::Dead,
            "suppressed" => Self::Suppressed,
            _ => return None,
        })
    }
}

/// The result of one attempt, as the dispatcher records it.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub at_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub latency_ms: i64,
    /// What the delivery becomes: `Delivered`, `Pending` (retry at `next_attempt_ms`),
    /// `Dead` or `Suppressed`.
    pub new_state: DeliveryState,
    pub next_attempt_ms: i64,
}

/// One line of a subscription's delivery log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub event_id: String,
    pub attempt: i64,
    pub at_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub latency_ms: i64,
    /// The delivery's state after this attempt.
    pub outcome: String,
}

/// A delivery's current state.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryView {
    pub event_id: String,
    pub event_type: String,
    pub toe: i64,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// Storage of event notifications. Implemented by [`SqlStore`].
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Write an event in its own transaction (producers without a transaction of their
    /// own; transactional writers call [`enqueue_event`]). Returns the event id.
    async fn enqueue(&self, event: &NewEvent, now_ms: i64) -> StoreResult<String>;

    async fn insert_subscription(&self, s: &EventSubscription) -> StoreResult<()>;
    /// The client's subscription `id`; another client's is `None`.
    async fn find_subscription(
        &self,
        client_id: &str,
        id: &str,
    ) -> StoreResult<Option<EventSubscription>>;
    async fn list_subscriptions(&self, client_id: &str) -> StoreResult<Vec<EventSubscription>>;
    /// Replace callback, version and types; `false` if the client has no such subscription.
    async fn update_subscription(&self, s: &EventSubscription) -> StoreResult<bool>;
    /// Delete with its deliveries and log; `false` if the client has no such subscription.
    async fn delete_subscription(&self, client_id: &str, id: &str) -> StoreResult<bool>;

    /// Lease up to `limit` due deliveries to callback subscriptions until
    /// `now_ms + lease_ms`: for each subscription only its oldest unfinished delivery.
    async fn claim_due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        self.claim_due_leased(now_ms, now_ms, lease_ms, limit).await
    }
    /// [`EventStore::claim_due`] with the lease on its own time base: due-ness is judged
    /// at `due_now_ms` (the platform clock, which event times use), leases at
    /// `lease_now_ms` (wall-clock milliseconds every dispatcher shares). A platform clock
    /// that jumps forward must not end the lease of a delivery still in flight.
    async fn claim_due_leased(
        &self,
        due_now_ms: i64,
        lease_now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Record an attempt's result and append it to the log, if the lease is still ours.
    async fn record_attempt(&self, d: &ClaimedDelivery, r: &AttemptResult) -> StoreResult<bool>;

    /// The newest `limit` attempts of a subscription, newest first.
    async fn list_attempts(
        &self,
        subscription_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryAttempt>>;
    /// The newest `limit` deliveries of a subscription, newest first.
    async fn list_deliveries(
        &self,
        subscription_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryView>>;
    /// Put a finished delivery back in the queue now, with a fresh retry horizon.
    /// `false` if there is no such delivery or it is still pending.
    async fn redeliver(
        &self,
        subscription_id: &str,
        event_id: &str,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Polling: the client's pending deliveries to subscriptions without a callback,
    /// oldest first (by event time), each event once, with the consent's status.
    async fn pending_for_polling(
        &self,
        client_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<(EventRecord, Option<ConsentStatus>)>>;
    /// Polling: mark the client's listed events acknowledged (or suppressed), logging
    /// `error` (a TPP's `setErrs` entry) if given. Unknown ids are ignored.
    async fn finish_polled(
        &self,
        client_id: &str,
        event_id: &str,
        state: DeliveryState,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()>;
}

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn get<'r, T>(row: &'r AnyRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<T, _>(name).map_err(db_err)
}

/// Write `event` and one pending delivery per subscription of its client that wants its
/// type, on `conn` (an open transaction of the caller's: `&mut *tx`). Returns the event
/// id. Nothing is delivered before the caller commits; a rollback removes the event too.
pub async fn enqueue_event(
    conn: &mut AnyConnection,
    event: &NewEvent,
    now_ms: i64,
) -> StoreResult<String> {
    let mut ids = enqueue_events(conn, std::slice::from_ref(event), now_ms).await?;
    ids.pop()
        .ok_or_else(|| StoreError::Corrupt("event insert returned no id".into()))
}

/// [`enqueue_event`] for several events of one transaction in three statements at most:
/// the outbox rows, each client's subscriptions once, the deliveries. Returns the ids in
/// the order of `events`.
pub async fn enqueue_events(
    conn: &mut AnyConnection,
    events: &[NewEvent],
    now_ms: i64,
) -> StoreResult<Vec<String>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(events.len());
    let mut details = Vec::with_capacity(events.len());
    for e in events {
        ids.push(format!("evt-{}", uuid::Uuid::new_v4()));
        details.push(serde_json::to_string(&e.detail).map_err(|e| corrupt("event detail", e))?);
    }
    const COLS: usize = 11;
    let values: Vec<String> = (0..events.len())
        .map(|i| {
            let n: Vec<String> = (1..=COLS).map(|c| format!("${}", i * COLS + c)).collect();
            format!("({})", n.join(", "))
        })
        .collect();
    let mut q = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO event_outbox (id, client_id, consent_id, event_type, rid, rty, link, \
         detail, txn, toe, created_at) VALUES {} RETURNING id, seq, \
         (SELECT COUNT(*) FROM event_subscriptions s WHERE s.client_id = event_outbox.client_id) \
         AS subscriptions",
        values.join(", ")
    )));
    for ((e, id), detail) in events.iter().zip(&ids).zip(details) {
        q = q
            .bind(id.clone())
            .bind(e.client_id.clone())
            .bind(e.consent_id.clone())
            .bind(e.event_type.clone())
            .bind(e.rid.clone())
            .bind(e.rty.clone())
            .bind(e.link.clone())
            .bind(detail)
            .bind(e.txn.clone())
            .bind(e.toe)
            .bind(now_ms / 1000);
    }
    let rows = q.fetch_all(&mut *conn).await.map_err(db_err)?;
    // RETURNING order is not promised for a multi-row insert: match by id.
    let mut seqs = std::collections::HashMap::with_capacity(rows.len());
    // Clients with a subscription, as the insert saw them: the others' subscriptions are
    // not read (there are none to deliver to).
    let mut subscribed = std::collections::HashSet::new();
    for r in &rows {
        let id = get::<String>(r, "id")?;
        if get::<i64>(r, "subscriptions")? > 0
            && let Some(e) = ids
                .iter()
                .position(|i| *i == id)
                .and_then(|i| events.get(i))
        {
            subscribed.insert(e.client_id.as_str());
        }
        seqs.insert(id, get::<i64>(r, "seq")?);
    }
    // (subscription, event id, seq, toe) for every subscription that wants its event.
    let mut deliveries: Vec<(String, &str, i64, i64)> = Vec::new();
    let mut clients: Vec<&str> = events.iter().map(|e| e.client_id.as_str()).collect();
    clients.sort_unstable();
    clients.dedup();
    for client in clients.into_iter().filter(|c| subscribed.contains(c)) {
        let subs = sqlx::query(
            "SELECT id, client_id, callback_url, version, event_types, created_at, updated_at \
             FROM event_subscriptions WHERE client_id = $1",
        )
        .bind(client.to_owned())
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err)?;
        let subs = subs
            .iter()
            .map(subscription_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        for (e, id) in events.iter().zip(&ids) {
            if e.client_id != client {
                continue;
            }
            let seq = *seqs
                .get(id)
                .ok_or_else(|| StoreError::Corrupt("event insert lost a row".into()))?;
            for s in subs.iter().filter(|s| s.wants(&e.event_type)) {
                deliveries.push((s.id.clone(), id.as_str(), seq, e.toe));
            }
        }
    }
    if !deliveries.is_empty() {
        const DCOLS: usize = 4;
        let values: Vec<String> = (0..deliveries.len())
            .map(|i| {
                let b = i * DCOLS;
                format!(
                    "(${}, ${}, ${}, ${}, 'pending', $1, $1, $1)",
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                )
            })
            .collect();
        let mut q = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO event_deliveries (subscription_id, event_id, event_seq, toe, state, \
             next_attempt_ms, since_ms, updated_at_ms) VALUES {}",
            values.join(", ")
        )))
        .bind(now_ms);
        for (sub, id, seq, toe) in deliveries {
            q = q.bind(sub).bind(id.to_owned()).bind(seq).bind(toe);
        }
        q.execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(ids)
}

/// The resource type and path of a consent kind that emits events, if any.
fn consent_resource(kind: &str, id: &str) -> Option<(&'static str, String)> {
    match kind {
        "account-access" => Some((
            "account-access-consent",
            format!("/open-banking/v4.0/aisp/account-access-consents/{id}"),
        )),
        "domestic-payment" => Some((
            "domestic-payment-consent",
            format!("/open-banking/v4.0/pisp/domestic-payment-consents/{id}"),
        )),
        "file-payment" => Some(crate::sql_file_payments::consent_resource(id)),
        _ => None,
    }
}

/// Wall-clock ms, but never later than the event's own time, so an event stamped by a
/// (test) clock ahead of the wall clock is still due at once.
pub(crate) fn due_ms(toe: i64) -> i64 {
    let wall = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    wall.min(toe.saturating_mul(1000))
}

/// A payment's status as committed in the caller's transaction (created, cleared,
/// returned): a `resource-update` for the `domestic-payment`, to the TPP that owns it.
/// Payment writers call it on the same connection as the status change, before commit.
pub(crate) async fn payment_changed(
    conn: &mut AnyConnection,
    client_id: &str,
    consent_id: &str,
    payment_id: &str,
    txn: &str,
    toe: i64,
) -> StoreResult<()> {
    let event = payment_changed_event(client_id, consent_id, payment_id, txn, toe);
    enqueue_event(conn, &event, due_ms(toe)).await?;
    Ok(())
}

/// The `resource-update` event of a domestic payment.
pub(crate) fn payment_changed_event(
    client_id: &str,
    consent_id: &str,
    payment_id: &str,
    txn: &str,
    toe: i64,
) -> NewEvent {
    NewEvent {
        client_id: client_id.to_owned(),
        consent_id: Some(consent_id.to_owned()),
        event_type: EVENT_RESOURCE_UPDATE.into(),
        rid: payment_id.to_owned(),
        rty: "domestic-payment".into(),
        link: format!("/open-banking/v4.0/pisp/domestic-payments/{payment_id}"),
        detail: serde_json::json!({}),
        txn: txn.to_owned(),
        toe,
    }
}

/// A payment consent consumed by its payment (`execute_payment` changes the status
/// itself, not through `update_consent`): its `resource-update`.
pub(crate) fn payment_consent_consumed_event(
    client_id: &str,
    consent_id: &str,
    txn: &str,
    toe: i64,
) -> Option<NewEvent> {
    let (rty, link) = consent_resource("domestic-payment", consent_id)?;
    Some(NewEvent {
        client_id: client_id.to_owned(),
        consent_id: Some(consent_id.to_owned()),
        event_type: EVENT_RESOURCE_UPDATE.into(),
        rid: consent_id.to_owned(),
        rty: rty.into(),
        link,
        detail: serde_json::json!({}),
        txn: txn.to_owned(),
        toe,
    })
}

/// Called by `update_consent` inside its transaction, after the guarded update took:
/// writes the event the transition means for the consent's TPP.
pub(crate) async fn consent_changed(
    conn: &mut AnyConnection,
    id: &str,
    from: &[ConsentStatus],
    to: ConsentStatus,
    audit: &crate::AuditEntry,
) -> StoreResult<()> {
    let Some(row) = sqlx::query("SELECT client_id, kind FROM consents WHERE id = $1")
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
    else {
        return Ok(());
    };
    let client_id: String = get(&row, "client_id")?;
    let kind: String = get(&row, "kind")?;
    let Some((rty, link)) = consent_resource(&kind, id) else {
        return Ok(());
    };
    let (event_type, detail) = match to {
        ConsentStatus::Revoked => (
            EVENT_CONSENT_REVOKED,
            serde_json::json!({ "reason": revocation_reason(&audit.actor) }),
        ),
        // Only an account-access consent has linked accounts that can change.
        ConsentStatus::Authorised
            if from == [ConsentStatus::Authorised] && kind == "account-access" =>
        {
            (EVENT_LINKED_ACCOUNT_UPDATE, serde_json::json!({}))
        }
        ConsentStatus::AwaitingAuthorisation => return Ok(()),
        _ => (EVENT_RESOURCE_UPDATE, serde_json::json!({})),
    };
    let event = NewEvent {
        client_id,
        consent_id: Some(id.to_owned()),
        event_type: event_type.into(),
        rid: id.to_owned(),
        rty: rty.into(),
        link,
        detail,
        txn: format!("txn-{}", uuid::Uuid::new_v4()),
        toe: audit.at,
    };
    // Due at once even if the audit time (a test clock) is ahead of the wall clock.
    enqueue_event(conn, &event, due_ms(audit.at)).await?;
    Ok(())
}

fn revocation_reason(actor: &str) -> &'static str {
    if actor.starts_with("customer:") {
        "revoked by the customer"
    } else if actor.starts_with("client:") {
        "revoked by the TPP"
    } else {
        "revoked by the bank"
    }
}

fn subscription_from_row(row: &AnyRow) -> StoreResult<EventSubscription> {
    let types: String = get(row, "event_types")?;
    Ok(EventSubscription {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        callback_url: get(row, "callback_url")?,
        version: get(row, "version")?,
        event_types: serde_json::from_str(&types)
            .map_err(|e| corrupt("event_subscriptions.event_types", e))?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

const EVENT_COLUMNS: &str = "o.seq AS o_seq, o.id AS o_id, o.client_id AS o_client_id, \
     o.consent_id AS o_consent_id, o.event_type AS o_event_type, o.rid AS o_rid, \
     o.rty AS o_rty, o.link AS o_link, o.detail AS o_detail, o.txn AS o_txn, o.toe AS o_toe, \
     o.created_at AS o_created_at, c.status AS c_status, c.kind AS c_kind, \
     c.expires_at AS c_expires_at";

fn event_from_row(row: &AnyRow) -> StoreResult<(EventRecord, Option<ConsentStatus>)> {
    let detail: String = get(row, "o_detail")?;
    let status: Option<String> = get(row, "c_status")?;
    let status = status
        .map(|s| {
            ConsentStatus::parse(&s).ok_or_else(|| corrupt("consents.status", format!("{s:?}")))
        })
        .transpose()?;
    // An account-access consent past its expiry that the sweep has not moved yet is
    // already expired for delivery: its alerts stop at the expiry, not at the next sweep.
    let kind: Option<String> = get(row, "c_kind")?;
    let expires_at: Option<i64> = get(row, "c_expires_at")?;
    let wall = time::OffsetDateTime::now_utc().unix_timestamp();
    let status = match status {
        Some(ConsentStatus::Authorised)
            if kind.as_deref() == Some("account-access")
                && expires_at.is_some_and(|e| e <= wall) =>
        {
            Some(ConsentStatus::Expired)
        }
        s => s,
    };
    Ok((
        EventRecord {
            id: get(row, "o_id")?,
            seq: get(row, "o_seq")?,
            created_at: get(row, "o_created_at")?,
            event: NewEvent {
                client_id: get(row, "o_client_id")?,
                consent_id: get(row, "o_consent_id")?,
                event_type: get(row, "o_event_type")?,
                rid: get(row, "o_rid")?,
                rty: get(row, "o_rty")?,
                link: get(row, "o_link")?,
                detail: serde_json::from_str(&detail)
                    .map_err(|e| corrupt("event_outbox.detail", e))?,
                txn: get(row, "o_txn")?,
                toe: get(row, "o_toe")?,
            },
        },
        status,
    ))
}

#[async_trait]
impl EventStore for SqlStore {
    async fn enqueue(&self, event: &NewEvent, now_ms: i64) -> StoreResult<String> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let id = enqueue_event(&mut tx, event, now_ms).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(id)
    }

    async fn insert_subscription(&self, s: &EventSubscription) -> StoreResult<()> {
        let types = serde_json::to_string(&s.event_types).map_err(|e| corrupt("event types", e))?;
        sqlx::query(
            "INSERT INTO event_subscriptions (id, client_id, callback_url, version, \
             event_types, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.id.clone())
        .bind(s.client_id.clone())
        .bind(s.callback_url.clone())
        .bind(s.version.clone())
        .bind(types)
        .bind(s.created_at)
        .bind(s.updated_at)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_subscription(
        &self,
        client_id: &str,
        id: &str,
    ) -> StoreResult<Option<EventSubscription>> {
        sqlx::query(
            "SELECT id, client_id, callback_url, version, event_types, created_at, updated_at \
             FROM event_subscriptions WHERE id = $1 AND client_id = $2",
        )
        .bind(id.to_owned())
        .bind(client_id.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .as_ref()
        .map(subscription_from_row)
        .transpose()
    }

    async fn list_subscriptions(&self, client_id: &str) -> StoreResult<Vec<EventSubscription>> {
        sqlx::query(
            "SELECT id, client_id, callback_url, version, event_types, created_at, updated_at \
             FROM event_subscriptions WHERE client_id = $1 ORDER BY created_at, id",
        )
        .bind(client_id.to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(subscription_from_row)
        .collect()
    }

    async fn update_subscription(&self, s: &EventSubscription) -> StoreResult<bool> {
        let types = serde_json::to_string(&s.event_types).map_err(|e| corrupt("event types", e))?;
        let n = sqlx::query(
            "UPDATE event_subscriptions SET callback_url = $1, version = $2, event_types = $3, \
             updated_at = $4 WHERE id = $5 AND client_id = $6",
        )
        .bind(s.callback_url.clone())
        .bind(s.version.clone())
        .bind(types)
        .bind(s.updated_at)
        .bind(s.id.clone())
        .bind(s.client_id.clone())
        .execute(self.pool())
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn delete_subscription(&self, client_id: &str, id: &str) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        // Explicit rather than relying on ON DELETE CASCADE being enabled everywhere.
        let n = sqlx::query("DELETE FROM event_subscriptions WHERE id = $1 AND client_id = $2")
            .bind(id.to_owned())
            .bind(client_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        if n != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        for table in ["event_deliveries", "event_delivery_attempts"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE subscription_id = $1"
            )))
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn claim_due_leased(
        &self,
        now_ms: i64,
        lease_now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // Candidates: due, not leased, to a callback subscription, and the oldest
        // unfinished delivery of their subscription. One statement takes the lease, so no
        // transaction spans the SELECT and the UPDATE; on PostgreSQL rows another
        // dispatcher is claiming right now are skipped instead of waited for.
        let lock = match self.backend_kind() {
            Backend::Postgres => "FOR UPDATE OF d SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let lease_until = lease_now_ms + lease_ms;
        let sql = format!(
            "UPDATE event_deliveries SET lease_until_ms = $1 WHERE seq IN ( \
               SELECT d.seq FROM event_deliveries d \
               JOIN event_subscriptions s ON s.id = d.subscription_id \
               WHERE d.state = 'pending' AND d.next_attempt_ms <= $2 \
                 AND d.lease_until_ms <= $4 AND s.callback_url IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM event_deliveries e \
                   WHERE e.subscription_id = d.subscription_id AND e.state = 'pending' \
                     AND (e.toe < d.toe OR (e.toe = d.toe AND e.event_seq < d.event_seq))) \
               ORDER BY d.next_attempt_ms, d.seq LIMIT $3 {lock}) \
             AND state = 'pending' AND lease_until_ms <= $4 RETURNING seq"
        );
        let seqs: Vec<i64> = sqlx::query(AssertSqlSafe(sql))
            .bind(lease_until)
            .bind(now_ms)
            .bind(limit)
            .bind(lease_now_ms)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| get::<i64>(r, "seq"))
            .collect::<StoreResult<_>>()?;
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT d.seq AS d_seq, d.subscription_id AS d_sub, d.attempts AS d_attempts, \
                 d.since_ms AS d_since, s.callback_url AS s_callback, {EVENT_COLUMNS} \
                 FROM event_deliveries d \
                 JOIN event_subscriptions s ON s.id = d.subscription_id \
                 JOIN event_outbox o ON o.id = d.event_id \
                 LEFT JOIN consents c ON c.id = o.consent_id WHERE d.seq = $1"
            )))
            .bind(seq)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
            // Gone: the subscription was deleted in between.
            let Some(row) = row else { continue };
            let callback: Option<String> = get(&row, "s_callback")?;
            let Some(callback_url) = callback else {
                continue;
            };
            let (event, consent_status) = event_from_row(&row)?;
            out.push(ClaimedDelivery {
                delivery_seq: get(&row, "d_seq")?,
                subscription_id: get(&row, "d_sub")?,
                callback_url,
                event,
                attempts: get(&row, "d_attempts")?,
                since_ms: get(&row, "d_since")?,
                lease_until_ms: lease_until,
                consent_status,
            });
        }
        Ok(out)
    }

    async fn record_attempt(&self, d: &ClaimedDelivery, r: &AttemptResult) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let n = sqlx::query(
            "UPDATE event_deliveries SET state = $1, attempts = attempts + $2, \
             next_attempt_ms = $3, lease_until_ms = 0, last_status = $4, last_error = $5, \
             updated_at_ms = $6 \
             WHERE seq = $7 AND state = 'pending' AND lease_until_ms = $8",
        )
        .bind(r.new_state.as_str())
        .bind(i64::from(r.new_state != DeliveryState::Suppressed))
        .bind(r.next_attempt_ms)
        .bind(r.status_code)
        .bind(r.error.clone())
        .bind(r.at_ms)
        .bind(d.delivery_seq)
        .bind(d.lease_until_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        let attempt = if r.new_state == DeliveryState::Suppressed {
            d.attempts
        } else {
            d.attempts + 1
        };
        sqlx::query(
            "INSERT INTO event_delivery_attempts (subscription_id, event_id, attempt, at_ms, \
             status_code, error, latency_ms, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(d.subscription_id.clone())
        .bind(d.event.id.clone())
        .bind(attempt)
        .bind(r.at_ms)
        .bind(r.status_code)
        .bind(r.error.clone())
        .bind(r.latency_ms)
        .bind(r.new_state.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn list_attempts(
        &self,
        subscription_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryAttempt>> {
        sqlx::query(
            "SELECT event_id, attempt, at_ms, status_code, error, latency_ms, outcome \
             FROM event_delivery_attempts WHERE subscription_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(subscription_id.to_owned())
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            Ok(DeliveryAttempt {
                event_id: get(r, "event_id")?,
                attempt: get(r, "attempt")?,
                at_ms: get(r, "at_ms")?,
                status_code: get(r, "status_code")?,
                error: get(r, "error")?,
                latency_ms: get(r, "latency_ms")?,
                outcome: get(r, "outcome")?,
            })
        })
        .collect()
    }

    async fn list_deliveries(
        &self,
        subscription_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryView>> {
        sqlx::query(
            "SELECT d.event_id, o.event_type, d.toe, d.state, d.attempts, d.next_attempt_ms, \
             d.last_status, d.last_error FROM event_deliveries d \
             JOIN event_outbox o ON o.id = d.event_id \
             WHERE d.subscription_id = $1 ORDER BY d.seq DESC LIMIT $2",
        )
        .bind(subscription_id.to_owned())
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            let state: String = get(r, "state")?;
            Ok(DeliveryView {
                event_id: get(r, "event_id")?,
                event_type: get(r, "event_type")?,
                toe: get(r, "toe")?,
                state: DeliveryState::parse(&state)
                    .ok_or_else(|| corrupt("event_deliveries.state", &state))?,
                attempts: get(r, "attempts")?,
                next_attempt_ms: get(r, "next_attempt_ms")?,
                last_status: get(r, "last_status")?,
                last_error: get(r, "last_error")?,
            })
        })
        .collect()
    }

    async fn redeliver(
        &self,
        subscription_id: &str,
        event_id: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE event_deliveries SET state = 'pending', next_attempt_ms = $1, since_ms = $1, \
             lease_until_ms = 0, updated_at_ms = $1 \
             WHERE subscription_id = $2 AND event_id = $3 AND state <> 'pending'",
        )
        .bind(now_ms)
        .bind(subscription_id.to_owned())
        .bind(event_id.to_owned())
        .execute(self.pool())
        .await
        .map_err(db_err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn pending_for_polling(
        &self,
        client_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<(EventRecord, Option<ConsentStatus>)>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM event_outbox o \
             LEFT JOIN consents c ON c.id = o.consent_id \
             WHERE o.id IN (SELECT d.event_id FROM event_deliveries d \
               JOIN event_subscriptions s ON s.id = d.subscription_id \
               WHERE s.client_id = $1 AND s.callback_url IS NULL AND d.state = 'pending') \
             ORDER BY o.toe, o.seq LIMIT $2"
        )))
        .bind(client_id.to_owned())
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn finish_polled(
        &self,
        client_id: &str,
        event_id: &str,
        state: DeliveryState,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let subs: Vec<String> = sqlx::query(
            "SELECT d.subscription_id FROM event_deliveries d \
             JOIN event_subscriptions s ON s.id = d.subscription_id \
             WHERE s.client_id = $1 AND s.callback_url IS NULL AND d.event_id = $2 \
               AND d.state = 'pending'",
        )
        .bind(client_id.to_owned())
        .bind(event_id.to_owned())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| get::<String>(r, "subscription_id"))
        .collect::<StoreResult<_>>()?;
        for sub in subs {
            sqlx::query(
                "UPDATE event_deliveries SET state = $1, attempts = attempts + 1, \
                 last_error = $2, updated_at_ms = $3 \
                 WHERE subscription_id = $4 AND event_id = $5 AND state = 'pending'",
            )
            .bind(state.as_str())
            .bind(error.map(str::to_owned))
            .bind(now_ms)
            .bind(sub.clone())
            .bind(event_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO event_delivery_attempts (subscription_id, event_id, attempt, \
                 at_ms, status_code, error, latency_ms, outcome) \
                 VALUES ($1, $2, 1, $3, NULL, $4, 0, $5)",
            )
            .bind(sub)
            .bind(event_id.to_owned())
            .bind(now_ms)
            .bind(error.map(str::to_owned))
            .bind(state.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }
}
