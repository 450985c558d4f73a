//! Operator metrics (Prometheus text format on a separate plain-HTTP port, `metrics_port`,
//! 0 = off) and request correlation by `x-fapi-interaction-id`.
//!
//! * `wekeza_http_requests_total{server, method, route, status}` and
//!   `wekeza_http_request_duration_seconds{server, method, route}` for the AS listeners
//!   and the resource server; `route` is the route template (`/register/{client_id}`), so
//!   ids never become label values.
//! * `wekeza_tokens_issued_total{grant_type}`.
//! * `wekeza_logins_total{step, outcome}`: read off the sign-in responses (303 to the
//!   next step = success, 303 elsewhere = ended after too many failures, 401 = failure).
//!
//! Off, the middleware costs one relaxed atomic load per request. The recorder is global
//! to the process (the `metrics` facade), installed once.
//!
//! Every AS request runs in a span carrying its interaction id (the client's
//! `x-fapi-interaction-id` if it is a UUID, else a new one), echoed on the response, so
//! JSON log lines of one request can be joined with the TPP's.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tracing::Instrument;

pub const INTERACTION_ID: HeaderName = HeaderName::from_static("x-fapi-interaction-id");

static ENABLED: AtomicBool = AtomicBool::new(false);
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide recorder (idempotent) and return its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets(&buckets)
        .map_err(|e| anyhow::anyhow!("metrics buckets: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    // Another thread may have won the race; then its recorder is the one in place.
    if metrics::set_global_recorder(recorder).is_ok() {
        let _ = HANDLE.set(handle);
    }
    let h = HANDLE
        .get()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("a different metrics recorder is installed"))?;
    ENABLED.store(true, Ordering::Relaxed);
    Ok(h)
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Serve `GET /metrics` on `tcp` (plain HTTP: scrape it from inside the network) until
/// `stop` turns true.
pub fn serve(
    tcp: tokio::net::TcpListener,
    handle: PrometheusHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let h = handle.clone();
            async move {
                // Keeps histograms' internal buckets bounded between scrapes.
                h.run_upkeep();
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4"),
                    )],
                    h.render(),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        let until = async move {
            let _ = stop.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(tcp, app).with_graceful_shutdown(until).await {
            tracing::error!(error = %e, "metrics listener stopped with an error");
        }
    })
}

/// Route-level middleware (`route_layer`, so the route template is known): counts and
/// times each request under `server`.
pub async fn track(State(server): State<&'static str>, req: Request, next: Next) -> Response {
    if !enabled() {
        return next.run(req).await;
    }
    let method = method_label(req.method());
    let post = req.method() == Method::POST;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let secs = started.elapsed().as_secs_f64();
    metrics::counter!("wekeza_http_requests_total",
        "server" => server, "method" => method, "route" => route.clone(),
        "status" => status_label(status))
    .increment(1);
    if post && let Some(step) = login_step(&route) {
        let outcome = login_outcome(status, &resp);
        metrics::counter!("wekeza_logins_total", "step" => step, "outcome" => outcome).increment(1);
    }
    metrics::histogram!("wekeza_http_request_duration_seconds",
        "server" => server, "method" => method, "route" => route)
    .record(secs);
    resp
}

/// Static labels for the methods we serve (no allocation per request).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_label(s: StatusCode) -> std::borrow::Cow<'static, str> {
    match s.as_u16() {
        200 => "200".into(),
        201 => "201".into(),
        204 => "204".into(),
        303 => "303".into(),
        400 => "400".into(),
        401 => "401".into(),
        403 => "403".into(),
        404 => "404".into(),
        n => n.to_string().into(),
    }
}

fn login_step(route: &str) -> Option<&'static str> {
    Some(match route {
        "/login" => "password",
        "/login/otp" => "otp",
        "/login/passkey/finish" => "passkey",
        "/account/login" => "dashboard_password",
        "/account/login/otp" => "dashboard_otp",
        _ => return None,
    })
}

fn login_outcome(status: StatusCode, resp: &Response) -> &'static str {
    match status {
        StatusCode::SEE_OTHER => {
            let local = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|l| l.starts_with('/') && !l.starts_with("//"));
            if local { "success" } else { "ended" }
        }
        StatusCode::UNAUTHORIZED => "failure",
        s if s.is_client_error() => "rejected",
        _ => "error",
    }
}

/// A token was issued (token endpoint).
pub fn token_issued(grant: authz_core::client::GrantType) {
    if !enabled() {
        return;
    }
    use authz_core::client::GrantType as G;
    let g = match grant {
        G::AuthorizationCode => "authorization_code",
        G::RefreshToken => "refresh_token",
        G::ClientCredentials => "client_credentials",
    };
    metrics::counter!("wekeza_tokens_issued_total", "grant_type" => g).increment(1);
}

/// Outermost AS middleware: the request's span with its interaction id, echoed back.
pub async fn interaction(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&INTERACTION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .hyphenated()
        .to_string();
    let span = tracing::info_span!("request", interaction_id = %id);
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(INTERACTION_ID, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_outcomes_from_responses() {
        let r = |status: StatusCode, loc: Option<&str>| {
            let mut resp = status.into_response();
            if let Some(l) = loc {
                resp.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(l).unwrap_or(HeaderValue::from_static("x")),
                );
            }
            login_outcome(status, &resp)
        };
        assert_eq!(r(StatusCode::SEE_OTHER, Some("/consent")), "success");
        assert_eq!(
            r(
                StatusCode::SEE_OTHER,
                Some("https://tpp.example/cb?error=access_denied")
            ),
            "ended"
        );
        assert_eq!(r(StatusCode::SEE_OTHER, Some("//evil.example")), "ended");
        assert_eq!(r(StatusCode::UNAUTHORIZED, None), "failure");
        assert_eq!(r(StatusCode::FORBIDDEN, None), "rejected");
        assert_eq!(login_step("/login/otp"), Some("otp"));
        assert_eq!(login_step("/token"), None);
    }
}
