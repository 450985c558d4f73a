//! Authorization requests that must fail (at PAR, on an error page, or by an error redirect)
//! and the request_uri lifecycle modules.

use crate::Pkce;
use crate::runner::checks::expect_par_error;
use crate::runner::ctx::{ClientAuth, Ctx, Front, Mode, Req};
use crate::runner::log::Log;
use crate::runner::variant::Profile;
use crate::tpp::{enc, now, random};
use std::time::Duration;

/// Push `req`; PAR may refuse it with one of `par_errors`, otherwise the authorization
/// endpoint must show an error page or redirect with one of `front_errors`.
#[allow(clippy::too_many_arguments)]
pub async fn refused(
    ctx: &Ctx,
    log: &mut Log,
    req: Req,
    pkce: &Pkce,
    par_errors: &[&str],
    front_errors: &[&str],
    req_id: &str,
    what: &str,
) -> anyhow::Result<()> {
    let r = ctx
        .par(log, &ctx.c1, pkce, &req, &ClientAuth::Normal)
        .await?;
    if r.status.as_u16() != 201 {
        expect_par_error(log, &r, &[400, 401], par_errors, req_id, what);
        return Ok(());
    }
    let url = ctx.authorize_url(&ctx.c1, r.str("request_uri").unwrap_or_default());
    let f = ctx.drive(log, &url, Mode::Approve, &[]).await?;
    ctx.expect_front_error(log, &f, front_errors, req.state.as_deref(), req_id, what);
    Ok(())
}

/// ensure-request-object-without-redirect-uri-fails / ensure-redirect-uri-in-authorization-request
pub async fn without_redirect_uri(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    refused(
        ctx,
        log,
        ctx.req().remove("redirect_uri"),
        &Pkce::new(),
        &["invalid_request", "invalid_request_object"],
        &["invalid_request", "invalid_request_object"],
        "FAPI2-SP-FINAL-5.3.2.2-6",
        "redirect_uri missing from the pushed request",
    )
    .await
}

/// An unregistered redirect URI. `tolerate`: the plain_fapi module, where RFC 9126 §2.4
/// lets the AS accept it for an authenticated PAR request.
pub async fn unregistered_redirect_uri(
    ctx: &Ctx,
    log: &mut Log,
    tolerate: bool,
) -> anyhow::Result<()> {
    let tpp = &ctx.c1;
    let bad = format!("{}/{}", tpp.redirect_uri.trim_end_matches('/'), random(6));
    let req = ctx.req().set("redirect_uri", &bad);
    let pkce = Pkce::new();
    let r = ctx.par(log, tpp, &pkce, &req, &ClientAuth::Normal).await?;
    let req_id = "FAPI2-SP-FINAL-5.3.2.1-7";
    if r.status.as_u16() != 201 {
        expect_par_error(
            log,
            &r,
            &[400, 401],
            &["invalid_request", "invalid_request_object"],
            req_id,
            "unregistered redirect_uri",
        );
        return Ok(());
    }
    let url = ctx.authorize_url(tpp, r.str("request_uri").unwrap_or_default());
    let f = ctx.drive(log, &url, Mode::Approve, &[&bad]).await?;
    match &f {
        Front::Callback(u) => {
            let to = u.as_str().split('?').next().unwrap_or_default();
            if to == bad {
                if tolerate || ctx.variant.fapi_profile == Profile::PlainFapi {
                    let msg = "the AS accepted the unregistered redirect_uri from the authenticated PAR request (RFC 9126 §2.4; allowed for plain_fapi, refused by ecosystem profiles)";
                    if tolerate {
                        log.pass(req_id, msg);
                        let code =
                            ctx.check_success_callback(log, &ctx.c1, &f, req.state.as_deref());
                        if code.is_err() {
                            log.note("the redirect to the unregistered URI carried no code");
                        }
                    } else {
                        log.warn(req_id, msg);
                    }
                } else {
                    log.fail(req_id, "the AS redirected to the unregistered redirect_uri");
                }
            } else {
                log.fail(
                    req_id,
                    "the AS redirected to the registered redirect_uri although the request named another",
                );
            }
        }
        _ => {
            ctx.expect_front_error(log, &f, &[], None, req_id, "unregistered redirect_uri");
        }
    }
    Ok(())
}

/// All parameters on the authorization URL, no PAR.
pub async fn without_par(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let tpp = &ctx.c1;
    let pkce = Pkce::new();
    let req = ctx.req();
    let ep = tpp.discovery["authorization_endpoint"]
        .as_str()
        .unwrap_or_default();
    let mut params = vec![("client_id".to_owned(), tpp.client_id.clone())];
    params.extend(ctx.par_params(tpp, &pkce, &req));
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let url = format!("{ep}?{}", q.join("&"));
    let f = ctx.drive(log, &url, Mode::Approve, &[]).await?;
    ctx.expect_front_error(
        log,
        &f,
        &["invalid_request"],
        req.state.as_deref(),
        "FAPI2-SP-FINAL-5.3.2.2-3",
        "authorization request without PAR",
    );
    Ok(())
}

/// response_type `code id_token` or `token`: refused at PAR (4xx; the error code is only
/// checked as a warning) or at the authorization endpoint.
pub async fn response_type(ctx: &Ctx, log: &mut Log, rt: &str) -> anyhow::Result<()> {
    let req = ctx.req().set("response_type", rt);
    let pkce = Pkce::new();
    let r = ctx
        .par(log, &ctx.c1, &pkce, &req, &ClientAuth::Normal)
        .await?;
    let req_id = "FAPI2-SP-FINAL-5.3.2.2-1";
    let s = r.status.as_u16();
    if s != 201 {
        log.check(
            (400..500).contains(&s),
            req_id,
            format!("response_type={rt} refused at PAR with a 4xx (got {s})"),
        );
        log.should(
            ["unsupported_response_type", "invalid_request", "unauthorized_client"].contains(&r.error()),
            "PAR-2.3",
            format!("PAR error is unsupported_response_type, invalid_request or unauthorized_client (got {})", r.error()),
        );
        return Ok(());
    }
    let url = ctx.authorize_url(&ctx.c1, r.str("request_uri").unwrap_or_default());
    let f = ctx.drive(log, &url, Mode::Approve, &[]).await?;
    if let Front::Callback(u) = &f {
        log.check(
            u.fragment().is_none_or(|fr| !fr.contains("code=")),
            req_id,
            "no code in the URL fragment",
        );
    }
    ctx.expect_front_error(
        log,
        &f,
        &["unsupported_response_type", "invalid_request"],
        req.state.as_deref(),
        req_id,
        &format!("response_type={rt}"),
    );
    Ok(())
}

/// Client 1's request_uri presented with client 2's client_id.
pub async fn request_uri_other_client(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let p = ctx.push(log, &ctx.c1, ctx.req()).await?;
    let url = ctx.authorize_url(&ctx.c2, &p.request_uri);
    let f = ctx.drive(log, &url, Mode::Approve, &[]).await?;
    ctx.expect_front_error(
        log,
        &f,
        &[
            "invalid_request",
            "invalid_request_object",
            "invalid_request_uri",
        ],
        None,
        "PAR-3-3",
        "request_uri used with another client's client_id",
    );
    Ok(())
}

/// A request_uri used again after a completed authorization.
pub async fn reuse_request_uri(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let (p, code) = ctx.authorize(log, &ctx.c1, ctx.req()).await?;
    let r = ctx
        .exchange(log, &ctx.c1, &code, &p.pkce, &ClientAuth::Normal, true)
        .await?;
    ctx.check_tokens(log, &ctx.c1, &r, p.req.nonce.as_deref())
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let f = ctx.drive(log, &p.url, Mode::Approve, &[]).await?;
    match &f {
        Front::Callback(u) if crate::browser::param(u, "code").is_some() => {
            log.warn(
                "PAR-7.3",
                "the request_uri was accepted a second time (one-time use is a SHOULD)",
            );
        }
        Front::Callback(_) => {
            ctx.expect_front_error(
                log,
                &f,
                &["invalid_request_uri"],
                None,
                "PAR-2.2",
                "reused request_uri",
            );
        }
        _ => {
            ctx.expect_front_error(log, &f, &[], None, "PAR-7.3", "reused request_uri");
        }
    }
    Ok(())
}

/// Wait out `expires_in` (real clock), then use the request_uri.
pub async fn expired_request_uri(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let p = ctx.push(log, &ctx.c1, ctx.req()).await?;
    log.check(
        p.expires_in > 0 && p.expires_in < 600,
        "FAPI2-SP-FINAL-5.3.2.2-12",
        format!(
            "request_uri lifetime is under 600 s (expires_in={})",
            p.expires_in
        ),
    );
    if p.expires_in > 30 * 60 {
        log.skip("expires_in is over 30 minutes: too long to wait for (the suite skips too)");
        return Ok(());
    }
    let until = p.pushed_at + p.expires_in + 1;
    let wait = (until - now()).max(0) as u64;
    log.note(format!(
        "waited {wait} s for the request_uri to expire (expires_in={})",
        p.expires_in
    ));
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 500)).await;
    let f = ctx.drive(log, &p.url, Mode::Approve, &[]).await?;
    let allowed: &[&str] = if matches!(f, Front::Callback(_)) {
        &["invalid_request_uri"]
    } else {
        &[]
    };
    ctx.expect_front_error(log, &f, allowed, None, "PAR-2.2", "expired request_uri");
    Ok(())
}

/// Visit the authorization endpoint twice before logging in (link preloaders): the
/// second visit must still complete (a recommendation: failures are warnings).
pub async fn reused_before_completion(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let p = ctx.push(log, &ctx.c1, ctx.req()).await?;
    let first = ctx.drive(log, &p.url, Mode::StopAtLogin, &[]).await?;
    let req_id = "FAPI2-SP-FINAL-5.3.2.2-note-3";
    if !matches!(first, Front::LoginPage) {
        log.fail(
            req_id,
            "the first visit to the authorization endpoint did not show the login page",
        );
        return Ok(());
    }
    let f = ctx.drive(log, &p.url, Mode::Approve, &[]).await?;
    match &f {
        Front::Callback(u) if crate::browser::param(u, "code").is_some() => {
            let code = ctx.check_success_callback(log, &ctx.c1, &f, p.req.state.as_deref())?;
            log.pass(
                req_id,
                "the request_uri was still usable after an earlier visit",
            );
            let r = ctx
                .exchange(log, &ctx.c1, &code, &p.pkce, &ClientAuth::Normal, true)
                .await?;
            ctx.check_tokens(log, &ctx.c1, &r, p.req.nonce.as_deref())
                .await?;
        }
        _ => log.warn(
            req_id,
            "the request_uri was consumed by the first visit, before the customer authorized",
        ),
    }
    Ok(())
}

/// A request_uri parameter inside the pushed request.
pub async fn request_uri_in_par(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    // A form parameter: outside the request object in the signed variants.
    let mut req = ctx.req();
    req.outside.push((
        "request_uri".into(),
        format!("urn:ietf:params:oauth:request_uri:{}", random(16)),
    ));
    refused(
        ctx,
        log,
        req,
        &Pkce::new(),
        &["invalid_request", "invalid_request_object"],
        &["invalid_request", "invalid_request_object"],
        "PAR-2.1",
        "request_uri sent to the PAR endpoint",
    )
    .await
}

/// PUT to the PAR endpoint.
pub async fn invalid_http_method(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let tpp = &ctx.c1;
    let pkce = Pkce::new();
    let mut form = ctx.auth(tpp, &ClientAuth::Normal);
    form.extend(ctx.par_params(tpp, &pkce, &ctx.req()));
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let url = ctx.par_url(tpp);
    let r = tpp
        .http
        .put(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body.join("&"))
        .send()
        .await?;
    let s = r.status().as_u16();
    log.evidence("PAR", format!("PUT {url} (form body)"), Some(s), None, None);
    log.check(
        (400..600).contains(&s),
        "PAR-2.3",
        format!("PAR refuses PUT with an HTTP error (got {s})"),
    );
    if s != 405 {
        log.note(format!(
            "RFC 9126 §2.3 suggests 405 Method Not Allowed; got {s}"
        ));
    }
    Ok(())
}

pub async fn pkce_required(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    refused(
        ctx,
        log,
        ctx.req()
            .remove("code_challenge")
            .remove("code_challenge_method"),
        &Pkce::new(),
        &["invalid_request"],
        &["invalid_request"],
        "FAPI2-SP-FINAL-5.3.2.2-5",
        "pushed request without PKCE",
    )
    .await
}

pub async fn plain_pkce(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let pkce = Pkce::new();
    refused(
        ctx,
        log,
        ctx.req()
            .set("code_challenge_method", "plain")
            .set("code_challenge", &pkce.verifier),
        &pkce,
        &["invalid_request"],
        &["invalid_request"],
        "FAPI2-SP-FINAL-5.3.2.2-5",
        "plain PKCE",
    )
    .await
}
