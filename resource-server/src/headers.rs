//! Request checks every API call gets before routing, and the `x-fapi-interaction-id`
//! every response carries (UK OB Read/Write v4 request headers; FAPI 2.0 §5.3.4 R2):
//!
//! * `x-fapi-interaction-id`: echoed when it is a UUID, generated when absent; a
//!   malformed one is refused (400) and the response carries a fresh id.
//! * an `access_token` query parameter is refused (400): tokens only in the header.
//! * `Accept` must admit `application/json` (406 otherwise).
//! * a request body must be `application/json` (415 otherwise).
//! * `x-fapi-customer-ip-address` must be an IP address; `x-fapi-auth-date` an HTTP-date.

use crate::error::{ObError, codes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

pub const INTERACTION_ID: HeaderName = HeaderName::from_static("x-fapi-interaction-id");
pub const CUSTOMER_IP: HeaderName = HeaderName::from_static("x-fapi-customer-ip-address");
pub const AUTH_DATE: HeaderName = HeaderName::from_static("x-fapi-auth-date");

/// The interaction id of the current request, for handlers and logs.
#[derive(Debug, Clone)]
pub struct InteractionId(pub String);

pub async fn fapi_headers(mut req: Request, next: Next) -> Response {
    let supplied = req.headers().get(&INTERACTION_ID).cloned();
    let (id, refusal) = match supplied {
        None => (uuid::Uuid::new_v4().to_string(), None),
        Some(v) => match v.to_str().ok().and_then(|s| uuid::Uuid::parse_str(s).ok()) {
            Some(_) => (v.to_str().unwrap_or_default().to_owned(), None),
            None => (
                uuid::Uuid::new_v4().to_string(),
                Some(ObError::bad_request(
                    codes::HEADER_INVALID,
                    "x-fapi-interaction-id must be a UUID",
                    "x-fapi-interaction-id",
                )),
            ),
        },
    };
    let refusal = refusal.or_else(|| check(&req));
    let mut resp = match refusal {
        Some(e) => e.into_response(),
        None => {
            req.extensions_mut().insert(InteractionId(id.clone()));
            let span = tracing::info_span!("aisp", interaction_id = %id, path = %req.uri().path());
            next.run(req).instrument(span).await
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(INTERACTION_ID, v);
    }
    resp
}

fn check(req: &Request) -> Option<ObError> {
    if let Some(q) = req.uri().query()
        && url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")
    {
        let mut e = ObError::bad_request(
            codes::FIELD_UNEXPECTED,
            "access tokens are accepted only in the Authorization header",
            "access_token",
        );
        e.www_authenticate = Some("Bearer error=\"invalid_request\"".into());
        return Some(e);
    }
    let h = req.headers();
    // A consent's file goes up and comes back in its own media type (ADR 0016).
    let file = crate::file_payments::is_file_path(req.uri().path());
    if !accepts_json(h) && !file {
        return Some(ObError::new(
            StatusCode::NOT_ACCEPTABLE,
            codes::HEADER_INVALID,
            "only application/json responses are available",
            Some("Accept"),
        ));
    }
    if has_body(h) && !is_json_content(h) && !file {
        return Some(ObError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::HEADER_INVALID,
            "request bodies must be application/json",
            Some("Content-Type"),
        ));
    }
    if let Some(v) = h.get(&CUSTOMER_IP)
        && v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok())
            .is_none()
    {
        return Some(ObError::bad_request(
            codes::HEADER_INVALID,
            "x-fapi-customer-ip-address must be an IP address",
            "x-fapi-customer-ip-address",
        ));
    }
    if let Some(v) = h.get(&AUTH_DATE)
        && v.to_str().ok().and_then(parse_http_date).is_none()
    {
        return Some(ObError::bad_request(
            codes::HEADER_INVALID,
            "x-fapi-auth-date must be an HTTP-date",
            "x-fapi-auth-date",
        ));
    }
    None
}

/// RFC 9110 §12.5.1 with q-values: JSON is acceptable unless every range that matches
/// it has q=0, or no range matches it.
pub fn accepts_json(h: &HeaderMap) -> bool {
    let values: Vec<&str> = h
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return true;
    }
    values.iter().flat_map(|v| v.split(',')).any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !q_zero && matches!(media.as_str(), "*/*" | "application/*" | "application/json")
    })
}

fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

fn is_json_content(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| m == "application/json" || m == "application/jose+jwe")
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires senders use.
fn parse_http_date(s: &str) -> Option<time::PrimitiveDateTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(s.trim(), &fmt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(header::ACCEPT, v);
        }
        h
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts_json(&HeaderMap::new()));
        for ok in [
            "application/json",
            "*/*",
            "text/html, application/*;q=0.5",
            "Application/JSON; charset=utf-8",
        ] {
            assert!(accepts_json(&accept(ok)), "{ok}");
        }
        for bad in [
            "text/html",
            "application/xml",
            "application/json;q=0",
            "image/*",
        ] {
            assert!(!accepts_json(&accept(bad)), "{bad}");
        }
        assert!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").is_some());
        assert!(parse_http_date("yesterday").is_none());
    }
}
