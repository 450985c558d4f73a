//! Checks shared by the modules, following what the OIDF suite asserts on each response.

use super::ctx::{Ctx, Front, Tokens};
use super::log::Log;
use crate::browser::param;
use crate::tpp::{Reply, Tpp, now};
use serde_json::Value;

/// Shannon entropy of `s` times its length, in bits (the suite's estimate).
pub fn entropy_bits(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = s.chars().count() as f64;
    let h: f64 = counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    h * n
}

fn is_json(r: &Reply) -> bool {
    r.headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
}

/// RFC 6749 §5.2: `error` and `error_description` use a restricted character set.
fn error_chars_ok(r: &Reply) -> bool {
    let ok = |s: &str| {
        s.bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
    };
    ok(r.error()) && r.str("error_description").is_none_or(ok)
}

impl Ctx {
    /// The authorization response of a flow that must succeed; returns the code.
    pub fn check_success_callback(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        f: &Front,
        state: Option<&str>,
    ) -> anyhow::Result<String> {
        let u = match f {
            Front::Callback(u) => u,
            Front::Page {
                status,
                error,
                title,
            } => {
                log.fail(
                    "FAPI2-SP-FINAL-5.3.2.2",
                    format!("expected a redirect with a code; the AS showed a page ({status}, {error:?}, {title:?})"),
                );
                anyhow::bail!("authorization did not complete");
            }
            Front::LoginPage => anyhow::bail!("stopped at the login page"),
        };
        let bare = u.as_str().split(['?', '#']).next().unwrap_or_default();
        log.check(
            bare == tpp.redirect_uri,
            "RFC6749-4.1.2",
            format!("redirected to the request's redirect_uri ({bare})"),
        );
        if let Some(e) = param(u, "error") {
            log.fail(
                "RFC6749-4.1.2",
                format!(
                    "authorization failed: error={e} {}",
                    param(u, "error_description").unwrap_or_default()
                ),
            );
            anyhow::bail!("authorization failed: {e}");
        }
        log.check(
            u.fragment().is_none(),
            "OIDCC-3.3.2.5",
            "no response parameters in the URL fragment",
        );
        let got_state = param(u, "state");
        match state {
            Some(s) => log.check(
                got_state.as_deref() == Some(s),
                "OIDCC-3.2.2.5",
                "state is returned unchanged",
            ),
            None => log.check(
                got_state.is_none(),
                "OIDCC-3.2.2.5",
                format!("no state is returned when none was sent (got {got_state:?})"),
            ),
        };
        log.check(
            param(u, "iss").as_deref() == Some(self.issuer()),
            "FAPI2-SP-FINAL-5.3.2.2-7",
            "iss in the authorization response is the issuer (RFC 9207)",
        );
        if self.jarm() {
            log.check(
                param(u, "aud").as_deref() == Some(tpp.client_id.as_str()),
                "JARM-4.4",
                format!("JARM aud is this client ({})", tpp.client_id),
            );
        }
        let code = param(u, "code").unwrap_or_default();
        if !log.check(
            !code.is_empty(),
            "RFC6749-4.1.2",
            "authorization code present",
        ) {
            anyhow::bail!("no code in the authorization response");
        }
        log.check(
            entropy_bits(&code) >= 128.0,
            "RFC6749-10.10",
            format!(
                "authorization code carries >= 128 bits ({:.0})",
                entropy_bits(&code)
            ),
        );
        Ok(code)
    }

    /// A token response that must be a success.
    pub async fn check_tokens(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        r: &Reply,
        nonce: Option<&str>,
    ) -> anyhow::Result<Tokens> {
        if !log.check(
            r.status.as_u16() == 200,
            "RFC6749-5.1",
            format!(
                "token endpoint answers 200 (got {} {})",
                r.status,
                r.error()
            ),
        ) {
            anyhow::bail!("token request failed: {} {}", r.status, r.body);
        }
        log.check(is_json(r), "RFC6749-5.1", "token response is JSON");
        log.check(
            r.headers
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("no-store")),
            "RFC6749-5.1",
            "token response has Cache-Control: no-store",
        );
        let at = r.str("access_token").unwrap_or_default().to_owned();
        if !log.check(!at.is_empty(), "RFC6749-4.1.4", "access_token present") {
            anyhow::bail!("no access token");
        }
        if tpp.uses_dpop() {
            log.check(
                r.str("token_type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("dpop")),
                "DPOP-5",
                format!(
                    "token_type is DPoP for DPoP-bound tokens (got {:?})",
                    r.str("token_type")
                ),
            );
        } else {
            log.check(
                r.str("token_type")
                    .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
                "RFC8705-3",
                format!(
                    "token_type is Bearer for certificate-bound tokens (got {:?})",
                    r.str("token_type")
                ),
            );
        }
        log.should(
            r.body
                .get("expires_in")
                .and_then(|v| v.as_i64())
                .is_some_and(|e| e > 0),
            "RFC6749-5.1",
            "expires_in is a positive number",
        );
        log.check(
            entropy_bits(&at) >= 128.0,
            "FAPI2-SP-FINAL-5.4.1-4",
            "access token carries >= 128 bits of entropy",
        );
        // A JWT access token must be bound to this client's DPoP key, exactly once.
        if tpp.uses_dpop()
            && let Ok(u) = fapi_jose::Unverified::parse(&at)
        {
            match u.claims.pointer("/cnf/jkt").and_then(|v| v.as_str()) {
                Some(j) => {
                    log.check(
                        Some(j) == tpp.dpop_jkt().as_deref(),
                        "FAPI2-SP-FINAL-5.3.2.1-5",
                        "access token cnf.jkt is the thumbprint of the client's DPoP key (RFC 9449 §6.1)",
                    );
                    log.check(
                        u.claims.pointer("/cnf/x5t#S256").is_none(),
                        "FAPI2-SP-FINAL-5.3.2.1-5",
                        "access token carries one binding (no cnf.x5t#S256 next to cnf.jkt)",
                    );
                }
                None => log.note(
                    "access token is a JWT without cnf.jkt; binding is checked at the resource",
                ),
            }
        }
        // A JWT access token must be bound to this client's certificate.
        if !tpp.uses_dpop()
            && let Ok(u) = fapi_jose::Unverified::parse(&at)
        {
            match u.claims.pointer("/cnf/x5t#S256").and_then(|v| v.as_str()) {
                Some(t) => {
                    log.check(
                        t == tpp.x5t_s256,
                        "FAPI2-SP-FINAL-5.3.2.1-5",
                        "access token cnf.x5t#S256 is the client certificate's thumbprint (RFC 8705 §3.1)",
                    );
                }
                None => log.note("access token is a JWT without cnf.x5t#S256; binding is checked at the resource"),
            }
        }
        let rt = r.str("refresh_token").map(str::to_owned);
        if let Some(rt) = &rt {
            log.check(
                entropy_bits(rt) >= 128.0,
                "RFC6749-10.10",
                "refresh token carries >= 128 bits of entropy",
            );
        }
        let id_token = if self.openid() {
            let Some(raw) = r.str("id_token") else {
                log.fail("OIDCC-3.1.3.3", "no id_token although openid was requested");
                anyhow::bail!("no id_token");
            };
            Some(self.check_id_token(log, tpp, raw, nonce).await?)
        } else {
            log.check(
                r.str("id_token").is_none(),
                "OIDCC-3.1.3.3",
                "no id_token when openid was not requested",
            );
            None
        };
        Ok(Tokens {
            reply: r.clone(),
            access_token: at,
            refresh_token: rt,
            id_token,
        })
    }

    /// OIDC Core §3.1.3.7 and FAPI 2.0 §5.4 checks on an ID token; returns its claims.
    pub async fn check_id_token(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        raw: &str,
        nonce: Option<&str>,
    ) -> anyhow::Result<Value> {
        let u = match fapi_jose::Unverified::parse(raw) {
            Ok(u) => u,
            Err(e) => {
                log.fail("OIDCC-2", format!("id_token is not a JWS: {e}"));
                anyhow::bail!("bad id_token");
            }
        };
        log.check(
            ["PS256", "ES256", "EdDSA"].contains(&u.header.alg.as_str()),
            "FAPI2-SP-FINAL-5.4.1-1",
            format!(
                "id_token alg is PS256, ES256 or EdDSA (got {})",
                u.header.alg
            ),
        );
        log.check(
            u.header.kid.is_some(),
            "OIDCC-10.1",
            "id_token header has a kid",
        );
        let keys = self.server_keys().await?;
        log.check(
            u.verify_with_set(keys).is_ok(),
            "OIDCC-3.1.3.7-6",
            "id_token signature verifies with the published JWKS",
        );
        let c = u.claims.clone();
        let t = now();
        log.check(
            c["iss"].as_str() == Some(self.issuer()),
            "OIDCC-3.1.3.7-2",
            "id_token iss is the issuer",
        );
        let aud_ok = match &c["aud"] {
            Value::String(a) => *a == tpp.client_id,
            Value::Array(a) => a.iter().any(|x| x.as_str() == Some(tpp.client_id.as_str())),
            _ => false,
        };
        log.check(
            aud_ok,
            "OIDCC-3.1.3.7-3",
            "id_token aud contains the client_id",
        );
        log.check(
            c["exp"].as_i64().is_some_and(|e| e > t),
            "OIDCC-3.1.3.7-9",
            "id_token exp is in the future",
        );
        log.check(
            c["iat"].as_i64().is_some_and(|i| i <= t + 60),
            "OIDCC-3.1.3.7-10",
            "id_token iat present and not in the future",
        );
        log.check(
            c["sub"].as_str().is_some_and(|s| !s.is_empty()),
            "OIDCC-2",
            "id_token has a sub",
        );
        match nonce {
            Some(n) => log.check(
                c["nonce"].as_str() == Some(n),
                "OIDCC-3.1.3.7-11",
                format!("id_token nonce equals the {}-character nonce sent", n.len()),
            ),
            None => log.check(
                c.get("nonce").is_none(),
                "OIDCC-3.1.3.7-11",
                "id_token has no nonce when none was sent",
            ),
        };
        Ok(c)
    }

    /// The access token is accepted at the resource with the client's certificate.
    pub async fn check_resource_ok(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        token: &str,
        scheme: &str,
    ) -> anyhow::Result<Reply> {
        let r = self.resource(log, tpp, token, scheme, true).await?;
        let s = r.status.as_u16();
        if self.uk() {
            log.check(
                s == 200,
                "FAPI2-SP-FINAL-5.3.4",
                format!(
                    "resource server (GET /accounts) accepts the sender-constrained token (got {s} {})",
                    r.body["Errors"][0]["ErrorCode"].as_str().unwrap_or(r.error())
                ),
            );
            let accounts = r.body["Data"]["Account"].as_array().map(Vec::len);
            log.check(
                accounts.is_some_and(|n| n > 0),
                "OB-AIS-4.0",
                format!("the accounts response lists the consented accounts (Data.Account: {accounts:?})"),
            );
        } else if self.openid() {
            log.check(
                s == 200,
                "FAPI2-SP-FINAL-5.3.4",
                format!(
                    "resource (userinfo) accepts the sender-constrained token (got {s} {})",
                    r.error()
                ),
            );
            log.check(
                r.body["sub"].as_str().is_some_and(|x| !x.is_empty()),
                "OIDCC-5.3.2",
                "userinfo response has a sub",
            );
        } else {
            // userinfo stands in for the RS; without openid it may refuse on scope only.
            log.check(
                s == 200 || (s == 403 && r.error() == "insufficient_scope"),
                "FAPI2-SP-FINAL-5.3.4",
                format!("resource (userinfo) accepts the token and its binding (got {s} {}; 403 insufficient_scope counts: no openid scope)", r.error()),
            );
        }
        log.check(
            r.headers.contains_key(reqwest::header::DATE),
            "RFC7231-7.1.1.2",
            "resource response has a Date header",
        );
        Ok(r)
    }

    /// The resource refuses `token` (sent with or without a certificate).
    pub async fn check_resource_refused(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        token: &str,
        with_cert: bool,
        req: &str,
        what: &str,
    ) -> anyhow::Result<()> {
        let r = self.resource(log, tpp, token, "Bearer", with_cert).await?;
        let s = r.status.as_u16();
        log.check(
            (400..500).contains(&s),
            req,
            format!("{what} (got {s} {})", r.error()),
        );
        Ok(())
    }

    /// The front channel must end in an error: an error page, or a redirect carrying one of
    /// `allowed` (and never a code).
    pub fn expect_front_error(
        &self,
        log: &mut Log,
        f: &Front,
        allowed: &[&str],
        state: Option<&str>,
        req: &str,
        what: &str,
    ) -> bool {
        match f {
            Front::Page {
                status,
                error,
                title,
            } => {
                log.pass(
                    req,
                    format!("{what}: the AS showed an error page ({status}, {}, {title:?}); the official suite asks for a screenshot here", error.as_deref().unwrap_or("no error code shown")),
                );
                true
            }
            Front::LoginPage => {
                log.fail(req, format!("{what}: the AS showed the login page"));
                false
            }
            Front::Callback(u) => {
                if param(u, "code").is_some() {
                    log.fail(req, format!("{what}: the AS issued an authorization code"));
                    return false;
                }
                let Some(e) = param(u, "error") else {
                    log.fail(req, format!("{what}: redirect with neither code nor error"));
                    return false;
                };
                let ok = log.check(
                    allowed.contains(&e.as_str()),
                    req,
                    format!(
                        "{what}: error redirect carries {e} (allowed: {})",
                        allowed.join(", ")
                    ),
                );
                if let Some(s) = state {
                    log.check(
                        param(u, "state").as_deref() == Some(s),
                        "OIDCC-3.1.2.6",
                        "error response returns the state",
                    );
                }
                log.check(
                    param(u, "iss").as_deref() == Some(self.issuer()),
                    "FAPI2-SP-FINAL-5.3.2.2-7",
                    "error response carries iss (RFC 9207)",
                );
                ok
            }
        }
    }
}

/// A token-endpoint error: 400 (401 allowed for invalid_client), JSON, `error` in `allowed`.
pub fn expect_token_error(
    log: &mut Log,
    r: &Reply,
    allowed: &[&str],
    req: &str,
    what: &str,
) -> bool {
    let s = r.status.as_u16();
    if s == 200 {
        log.fail(req, format!("{what}: the token endpoint issued tokens"));
        return false;
    }
    log.check(
        s == 400 || (s == 401 && r.error() == "invalid_client"),
        "RFC6749-5.2",
        format!("status 400, or 401 with invalid_client (got {s})"),
    );
    log.check(is_json(r), "OIDCC-3.1.3.4", "error response is JSON");
    log.check(
        error_chars_ok(r),
        "RFC6749-5.2",
        "error and error_description use the allowed characters",
    );
    log.should(
        !r.str("error_description")
            .is_some_and(|d| d.contains(['\r', '\n', '\t'])),
        "RFC6749-5.2",
        "error_description has no CR, LF or TAB",
    );
    log.check(
        allowed.contains(&r.error()),
        req,
        format!(
            "{what}: error is {} (allowed: {})",
            r.error(),
            allowed.join(", ")
        ),
    )
}

/// A PAR error: one of `statuses` and `error` in `allowed`.
pub fn expect_par_error(
    log: &mut Log,
    r: &Reply,
    statuses: &[u16],
    allowed: &[&str],
    req: &str,
    what: &str,
) -> bool {
    let s = r.status.as_u16();
    if s == 201 || s == 200 {
        log.fail(req, format!("{what}: PAR accepted the request ({s})"));
        return false;
    }
    log.check(
        statuses.contains(&s),
        "PAR-2.3",
        format!("PAR error status is one of {statuses:?} (got {s})"),
    );
    log.check(
        allowed.contains(&r.error()),
        req,
        format!(
            "{what}: PAR error is {} (allowed: {})",
            r.error(),
            allowed.join(", ")
        ),
    )
}
