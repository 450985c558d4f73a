//! HTTP plumbing shared by every endpoint: the one place OAuth errors become responses,
//! the form extractor that turns any malformed body into an RFC 6749 error (never an
//! axum plain-text rejection), the client-certificate extractor, and page headers.

use crate::tls::TlsInfo;
use authz_core::{ErrorCode, OAuthError};
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An OAuth error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub OAuthError);

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        Self(e)
    }
}

impl From<authz_store::StoreError> for ApiError {
    fn from(e: authz_store::StoreError) -> Self {
        Self(OAuthError::server_error(e.to_string()))
    }
}

pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.code == ErrorCode::ServerError {
            tracing::error!(detail = e.detail.as_deref().unwrap_or(""), "server error");
        } else {
            tracing::info!(error = e.code.as_str(), description = %e.description, detail = e.detail.as_deref().unwrap_or(""), "request refused");
        }
        let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body =
            serde_json::json!({"error": e.code.as_str(), "error_description": e.description});
        let mut resp = (status, axum::Json(body)).into_response();
        no_store(resp.headers_mut());
        if e.code == ErrorCode::InvalidToken || e.code == ErrorCode::InsufficientScope {
            let v = format!(
                "Bearer error=\"{}\", error_description=\"{}\"",
                e.code.as_str(),
                e.description.replace('"', "'")
            );
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

/// `application/x-www-form-urlencoded` body as ordered pairs (duplicates preserved so
/// they can be refused).
pub struct OAuthForm(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        // RFC 6749 §2.3: one authentication method per request, and shared secrets
        // (client_secret_basic) are not a FAPI 2.0 method at all.
        let basic = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("basic ")));
        if basic {
            return Err(ApiError(OAuthError::invalid_client(
                "HTTP Basic client authentication is not accepted; use private_key_jwt or tls_client_auth",
            )));
        }
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ApiError(OAuthError::invalid_request(
                "content type must be application/x-www-form-urlencoded",
            )));
        }
        let bytes = axum::body::to_bytes(req.into_body(), authz_core::MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                ApiError(OAuthError::invalid_request(
                    "request body is too large or unreadable",
                ))
            })?;
        parse_form(&bytes).map(Self).ok_or_else(|| {
            ApiError(OAuthError::invalid_request(
                "request body is not valid application/x-www-form-urlencoded",
            ))
        })
    }
}

/// Strict `application/x-www-form-urlencoded`: UTF-8 text, every `%` followed by two hex
/// digits, every decoded name and value UTF-8. (`url::form_urlencoded` is lenient: it
/// passes bad escapes through and replaces invalid UTF-8, so garbage would reach the
/// protocol layer as parameters instead of being refused as a malformed request.)
fn parse_form(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}

fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let (Some(h), Some(l)) = (
                    b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                    b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
                ) else {
                    return None;
                };
                out.push((h * 16 + l) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The verified client certificate of this connection, if any.
#[derive(Clone)]
pub struct PeerCert {
    pub der: Vec<u8>,
    pub x5t_s256: String,
}

pub struct ClientCert(pub Option<PeerCert>);

impl<S: Send + Sync> FromRequestParts<S> for ClientCert {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let info = ConnectInfo::<TlsInfo>::from_request_parts(parts, state)
            .await
            .ok();
        Ok(Self(info.and_then(|ConnectInfo(i)| i.client_cert).map(
            |c| PeerCert {
                x5t_s256: fapi_jose::x5t_s256(c.as_ref()),
                der: c.as_ref().to_vec(),
            },
        )))
    }
}

/// JSON success response that must not be cached (RFC 6749 §5.1).
pub fn json_no_store(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    no_store(r.headers_mut());
    r
}

/// Headers for every HTML page: no caching, no framing, no sniffing, a strict CSP.
/// `form_target` widens `form-action` to the client's origin, because browsers apply
/// `form-action` to the redirect that follows a form post.
pub fn html_page(status: StatusCode, html: String, form_target: Option<&str>) -> Response {
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'{}; frame-ancestors 'none'; base-uri 'none'",
        form_target.map(|o| format!(" {o}")).unwrap_or_default()
    );
    let mut r = (status, Body::from(html)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    no_store(h);
    r
}

pub fn redirect_303(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(r.headers_mut());
    r
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::parse_form;

    #[test]
    fn form_parsing_is_strict() {
        let ok = parse_form(b"a=b+c&d=%41%c3%A9&e&&f=");
        let want: Vec<(String, String)> = [("a", "b c"), ("d", "A\u{e9}"), ("e", ""), ("f", "")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(ok, Some(want));
        for bad in [
            &b"a=%zz"[..],
            b"a=%4",
            b"a=%",
            b"a=%+1",
            b"a=%ff",
            b"a=\xff",
            b"\xc3\x28=1",
        ] {
            assert!(parse_form(bad).is_none(), "{bad:?}");
        }
    }
}
