//! Event notifications for TPPs (UK OB Read/Write v4 event notification APIs), all with a
//! client-credentials token, sender-constrained like the consent API:
//!
//! * `POST/GET /open-banking/v4.0/events/event-subscriptions`,
//!   `PUT/DELETE …/event-subscriptions/{EventSubscriptionId}`: a callback URL (https,
//!   public addresses only unless the deployment allows others), the event types wanted
//!   (none = all) and the version. Without `CallbackUrl` the TPP polls.
//! * `GET …/event-subscriptions/{id}/deliveries`: the delivery log (platform extension).
//! * `POST …/event-subscriptions/{id}/deliveries/{EventId}/redeliver`: send a delivered,
//!   dead or suppressed event again (platform extension).
//! * `POST /open-banking/v4.0/events`: aggregated polling (`ack`, `setErrs`, `maxEvents`,
//!   `returnImmediately`), returning pending SETs.
//!
//! Another client's subscription answers 400 `UK.OBIE.Resource.NotFound`, like an
//! unknown one.

use crate::AppState;
use crate::consents::ClientAccess;
use crate::error::{ObError, ObErrorResponse, codes};
use crate::event_dispatch::{CallbackPolicy, SetSigner, deliverable, now_ms};
use authz_store::{DeliveryState, EVENT_TYPES, EventStore, EventSubscription};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

pub const EVENTS_PREFIX: &str = "/open-banking/v4.0/events";
/// The only `Version` accepted.
pub const VERSION: &str = "4.0";
/// Deliveries and attempts returned by the log endpoint.
const LOG_LIMIT: i64 = 200;
/// Subscriptions per client: every event fans out to each, so their number is bounded.
pub const MAX_SUBSCRIPTIONS: usize = 10;
/// `maxEvents` default and ceiling for polling.
const POLL_DEFAULT: i64 = 20;
const POLL_MAX: i64 = 100;
/// Longest wait of a polling request with `returnImmediately: false`.
const LONG_POLL: Duration = Duration::from_secs(10);

/// What the event endpoints need; absent when the deployment has no events store.
#[derive(Clone)]
pub struct EventsState {
    pub store: Arc<dyn EventStore>,
    pub policy: CallbackPolicy,
    pub signer: Arc<SetSigner>,
}

fn events(st: &AppState) -> Result<&EventsState, ObError> {
    st.events.as_ref().ok_or_else(ObError::endpoint_not_found)
}

fn not_found() -> ObError {
    ObError::bad_request(
        codes::NOT_FOUND,
        "no such event subscription",
        "EventSubscriptionId",
    )
}

fn invalid(message: impl Into<String>, path: &str) -> ObError {
    ObError::bad_request(codes::FIELD_INVALID, message, path)
}

pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, ObError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ObError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::HEADER_INVALID,
            "the request body must be application/json",
            Some("Content-Type"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| invalid(format!("invalid body: {e}"), ""))
}

// ---- shapes -------------------------------------------------------------------------------

/// `OBEventSubscription1`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObEventSubscriptionRequest {
    pub data: ObEventSubscriptionRequestData,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObEventSubscriptionRequestData {
    /// Required on `PUT`, equal to the path's id.
    #[serde(default)]
    pub event_subscription_id: Option<String>,
    /// `https` URL the SETs are POSTed to; absent = the TPP polls `POST /events`.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// `4.0`.
    pub version: String,
    /// Event type URNs wanted; absent or empty = all.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
}

/// `OBEventSubscriptionResponse1`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObEventSubscriptionResponse {
    pub data: ObEventSubscriptionData,
    pub links: SelfLink,
    #[schema(value_type = Object)]
    pub meta: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObEventSubscriptionData {
    pub event_subscription_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
}

/// `OBEventSubscriptionsResponse1`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObEventSubscriptionsResponse {
    pub data: ObEventSubscriptionsData,
    pub links: SelfLink,
    #[schema(value_type = Object)]
    pub meta: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObEventSubscriptionsData {
    pub event_subscription: Vec<ObEventSubscriptionData>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SelfLink {
    #[serde(rename = "Self")]
    pub self_: String,
}

/// The delivery log of a subscription (platform extension).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DeliveryLogResponse {
    pub data: DeliveryLogData,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DeliveryLogData {
    /// Newest first.
    pub deliveries: Vec<DeliveryEntry>,
    /// Newest first.
    pub attempts: Vec<AttemptEntry>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct DeliveryEntry {
    /// The SET's `jti`.
    pub event_id: String,
    pub event_type: String,
    /// Time of event, unix seconds.
    pub toe: i64,
    /// `pending`, `delivered`, `acked`, `dead` or `suppressed`.
    pub state: String,
    pub attempts: i64,
    /// Next attempt (pending only), unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct AttemptEntry {
    pub event_id: String,
    pub attempt: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: i64,
    /// The delivery's state after the attempt.
    pub outcome: String,
}

/// Aggregated polling request (UK OB `POST /events`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollRequest {
    /// Pending SETs to return (0 = only acknowledge); default 20, at most 100.
    #[serde(default)]
    pub max_events: Option<i64>,
    /// `false`: wait up to 10 s for an event when none is pending. Default `true`.
    #[serde(default)]
    pub return_immediately: Option<bool>,
    /// `jti`s processed by the TPP.
    #[serde(default)]
    pub ack: Vec<String>,
    /// `jti` → error the TPP had with that SET; counts as acknowledged.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set_errs: BTreeMap<String, SetErr>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetErr {
    pub err: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// Aggregated polling response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollResponse {
    /// `jti` → SET (compact JWS).
    #[schema(value_type = Object)]
    pub sets: BTreeMap<String, String>,
    pub more_available: bool,
}

// ---- helpers --------------------------------------------------------------------------------

fn subscription_data(s: &EventSubscription) -> ObEventSubscriptionData {
    ObEventSubscriptionData {
        event_subscription_id: s.id.clone(),
        callback_url: s.callback_url.clone(),
        version: s.version.clone(),
        event_types: s.event_types.clone(),
    }
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn one(st: &AppState, s: &EventSubscription, status: StatusCode) -> Response {
    let body = ObEventSubscriptionResponse {
        data: subscription_data(s),
        links: SelfLink {
            self_: format!(
                "{}{EVENTS_PREFIX}/event-subscriptions/{}",
                st.base_url, s.id
            ),
        },
        meta: serde_json::json!({}),
    };
    no_store((status, Json(body)).into_response())
}

/// Validate the writable fields; the checked callback, version and types.
async fn checked(
    ev: &EventsState,
    d: &ObEventSubscriptionRequestData,
) -> Result<(Option<String>, String, Vec<String>), ObError> {
    if d.version != VERSION {
        return Err(invalid(
            format!("Version must be {VERSION}"),
            "Data.Version",
        ));
    }
    let types = d.event_types.clone().unwrap_or_default();
    for t in &types {
        if !EVENT_TYPES.contains(&t.as_str()) {
            return Err(invalid(
                format!("unsupported event type {t}"),
                "Data.EventTypes",
            ));
        }
    }
    let callback = match &d.callback_url {
        None => None,
        Some(u) => Some(
            ev.policy
                .check_url(u)
                .await
                .map_err(|m| invalid(m, "Data.CallbackUrl"))?
                .to_string(),
        ),
    };
    Ok((callback, d.version.clone(), types))
}

// ---- endpoints ------------------------------------------------------------------------------

#[utoipa::path(post, path = "/open-banking/v4.0/events/event-subscriptions", tag = "Event Notifications",
    request_body(content = ObEventSubscriptionRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Subscription created", body = ObEventSubscriptionResponse),
        (status = 400, description = "Invalid field, a callback URL that is not https or points at an internal address, or already 10 subscriptions", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn create_subscription(
    State(st): State<AppState>,
    ClientAccess(client): ClientAccess,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    let ev = events(&st)?;
    let req: ObEventSubscriptionRequest = json_body(&headers, &body)?;
    if req.data.event_subscription_id.is_some() {
        return Err(ObError::bad_request(
            codes::FIELD_UNEXPECTED,
            "EventSubscriptionId is assigned by the server",
            "Data.EventSubscriptionId",
        ));
    }
    let (callback_url, version, event_types) = checked(ev, &req.data).await?;
    if ev.store.list_subscriptions(&client.client_id).await?.len() >= MAX_SUBSCRIPTIONS {
        return Err(invalid(
            format!("at most {MAX_SUBSCRIPTIONS} event subscriptions per client"),
            "Data",
        ));
    }
    let now = st.clock.now().unix_timestamp();
    let s = EventSubscription {
        id: format!("esub-{}", uuid::Uuid::new_v4()),
        client_id: client.client_id,
        callback_url,
        version,
        event_types,
        created_at: now,
        updated_at: now,
    };
    ev.store.insert_subscription(&s).await?;
    Ok(one(&st, &s, StatusCode::CREATED))
}

#[utoipa::path(get, path = "/open-banking/v4.0/events/event-subscriptions", tag = "Event Notifications",
    responses(
        (status = 200, description = "The client's subscriptions", body = ObEventSubscriptionsResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse)))]
pub async fn list_subscriptions(
    State(st): State<AppState>,
    ClientAccess(client): ClientAccess,
) -> Result<Response, ObError> {
    let ev = events(&st)?;
    let subs = ev.store.list_subscriptions(&client.client_id).await?;
    let body = ObEventSubscriptionsResponse {
        data: ObEventSubscriptionsData {
            event_subscription: subs.iter().map(subscription_data).collect(),
        },
        links: SelfLink {
            self_: format!("{}{EVENTS_PREFIX}/event-subscriptions", st.base_url),
        },
        meta: serde_json::json!({}),
    };
    Ok(no_store(Json(body).into_response()))
}

#[utoipa::path(put, path = "/open-banking/v4.0/events/event-subscriptions/{EventSubscriptionId}", tag = "Event Notifications",
    params(("EventSubscriptionId" = String, Path, description = "Subscription id")),
    request_body(content = ObEventSubscriptionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Subscription replaced", body = ObEventSubscriptionResponse),
        (status = 400, description = "Unknown or another client's subscription, or an invalid field", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn update_subscription(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ClientAccess(client): ClientAccess,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    let ev = events(&st)?;
    let req: ObEventSubscriptionRequest = json_body(&headers, &body)?;
    if req.data.event_subscription_id.as_deref() != Some(id.as_str()) {
        return Err(invalid(
            "EventSubscriptionId must equal the one in the path",
            "Data.EventSubscriptionId",
        ));
    }
    let mut s = ev
        .store
        .find_subscription(&client.client_id, &id)
        .await?
        .ok_or_else(not_found)?;
    let (callback_url, version, event_types) = checked(ev, &req.data).await?;
    s.callback_url = callback_url;
    s.version = version;
    s.event_types = event_types;
    s.updated_at = st.clock.now().unix_timestamp();
    if !ev.store.update_subscription(&s).await? {
        return Err(not_found());
    }
    Ok(one(&st, &s, StatusCode::OK))
}

#[utoipa::path(delete, path = "/open-banking/v4.0/events/event-subscriptions/{EventSubscriptionId}", tag = "Event Notifications",
    params(("EventSubscriptionId" = String, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted with its pending deliveries and log"),
        (status = 400, description = "Unknown or another client's subscription", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse)))]
pub async fn delete_subscription(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ClientAccess(client): ClientAccess,
) -> Result<Response, ObError> {
    let ev = events(&st)?;
    if !ev.store.delete_subscription(&client.client_id, &id).await? {
        return Err(not_found());
    }
    Ok(no_store(StatusCode::NO_CONTENT.into_response()))
}

#[utoipa::path(get, path = "/open-banking/v4.0/events/event-subscriptions/{EventSubscriptionId}/deliveries", tag = "Event Notifications",
    params(("EventSubscriptionId" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "The newest 200 deliveries and attempts (platform extension)", body = DeliveryLogResponse),
        (status = 400, description = "Unknown or another client's subscription", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse)))]
pub async fn get_deliveries(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ClientAccess(client): ClientAccess,
) -> Result<Response, ObError> {
    let ev = events(&st)?;
    ev.store
        .find_subscription(&client.client_id, &id)
        .await?
        .ok_or_else(not_found)?;
    let deliveries = ev.store.list_deliveries(&id, LOG_LIMIT).await?;
    let attempts = ev.store.list_attempts(&id, LOG_LIMIT).await?;
    let body = DeliveryLogResponse {
        data: DeliveryLogData {
            deliveries: deliveries
                .into_iter()
                .map(|d| DeliveryEntry {
                    next_attempt_ms: (d.state == DeliveryState::Pending)
                        .then_some(d.next_attempt_ms),
                    event_id: d.event_id,
                    event_type: d.event_type,
                    toe: d.toe,
                    state: d.state.as_str().into(),
                    attempts: d.attempts,
                    last_status_code: d.last_status,
                    last_error: d.last_error,
                })
                .collect(),
            attempts: attempts
                .into_iter()
                .map(|a| AttemptEntry {
                    event_id: a.event_id,
                    attempt: a.attempt,
                    at_ms: a.at_ms,
                    status_code: a.status_code,
                    error: a.error,
                    latency_ms: a.latency_ms,
                    outcome: a.outcome,
                })
                .collect(),
        },
    };
    Ok(no_store(Json(body).into_response()))
}

#[utoipa::path(post, path = "/open-banking/v4.0/events/event-subscriptions/{EventSubscriptionId}/deliveries/{EventId}/redeliver", tag = "Event Notifications",
    params(("EventSubscriptionId" = String, Path, description = "Subscription id"),
           ("EventId" = String, Path, description = "The event's id (the SET's jti)")),
    responses(
        (status = 202, description = "Queued again with a fresh retry horizon (platform extension)"),
        (status = 400, description = "Unknown subscription or event, or the event is still pending", body = ObErrorResponse),
        (status = 401, body = ObErrorResponse), (status = 403, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse)))]
pub async fn redeliver(
    State(st): State<AppState>,
    Path((id, event_id)): Path<(String, String)>,
    ClientAccess(client): ClientAccess,
) -> Result<Response, ObError> {
    let ev = events(&st)?;
    ev.store
        .find_subscription(&client.client_id, &id)
        .await?
        .ok_or_else(not_found)?;
    if !ev
        .store
        .redeliver(&id, &event_id, now_ms(&*st.clock))
        .await?
    {
        return Err(ObError::bad_request(
            codes::NOT_FOUND,
            "no finished delivery of that event to this subscription",
            "EventId",
        ));
    }
    Ok(no_store(StatusCode::ACCEPTED.into_response()))
}

#[utoipa::path(post, path = "/open-banking/v4.0/events", tag = "Event Notifications",
    request_body(content = PollRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Pending SETs of the client's polling subscriptions", body = PollResponse),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 415, body = ObErrorResponse),
        (status = 429, body = ObErrorResponse), (status = 500, body = ObErrorResponse)))]
pub async fn poll_events(
    State(st): State<AppState>,
    ClientAccess(client): ClientAccess,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ObError> {
    let ev = events(&st)?;
    let req: PollRequest = json_body(&headers, &body)?;
    let max = req.max_events.unwrap_or(POLL_DEFAULT);
    if !(0..=POLL_MAX).contains(&max) {
        return Err(invalid(
            format!("maxEvents must be between 0 and {POLL_MAX}"),
            "maxEvents",
        ));
    }
    let cid = &client.client_id;
    for jti in &req.ack {
        ev.store
            .finish_polled(cid, jti, DeliveryState::Acked, None, now_ms(&*st.clock))
            .await?;
    }
    for (jti, e) in &req.set_errs {
        let msg = match &e.description {
            Some(d) => format!("{}: {d}", e.err),
            None => e.err.clone(),
        };
        ev.store
            .finish_polled(
                cid,
                jti,
                DeliveryState::Acked,
                Some(&msg),
                now_ms(&*st.clock),
            )
            .await?;
    }
    let mut sets = BTreeMap::new();
    let mut more = false;
    if max > 0 {
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        loop {
            // One more than asked tells whether more are available.
            let pending = ev.store.pending_for_polling(cid, max + 1).await?;
            more = pending.len() as i64 > max;
            for (e, consent) in pending.into_iter().take(max as usize) {
                if !deliverable(&e, consent) {
                    ev.store
                        .finish_polled(
                            cid,
                            &e.id,
                            DeliveryState::Suppressed,
                            Some("the consent covering this event is no longer authorised"),
                            now_ms(&*st.clock),
                        )
                        .await?;
                    continue;
                }
                let set = ev.signer.sign(&e, e.created_at).map_err(|err| {
                    tracing::error!(error = %err, "signing a SET failed");
                    ObError::internal()
                })?;
                sets.insert(e.id, set);
            }
            if !sets.is_empty()
                || more
                || req.return_immediately != Some(false)
                || tokio::time::Instant::now() >= deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(no_store(
        Json(PollResponse {
            sets,
            more_available: more,
        })
        .into_response(),
    ))
}
