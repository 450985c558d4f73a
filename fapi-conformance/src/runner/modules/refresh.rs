//! refresh-token: issued, not rotated, bound to the client and its certificate (or its
//! DPoP key).

use crate::runner::checks::expect_token_error;
use crate::runner::ctx::{ClientAuth, Ctx};
use crate::runner::log::Log;
use serde_json::json;

fn refresh_form(ctx: &Ctx, tpp: &crate::tpp::Tpp, rt: &str) -> Vec<(String, String)> {
    let mut f = ctx.auth(tpp, &ClientAuth::Normal);
    f.push(("grant_type".into(), "refresh_token".into()));
    f.push(("refresh_token".into(), rt.into()));
    f
}

pub async fn refresh_token(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let (_, t1) = ctx.flow(log, &ctx.c1, ctx.req()).await?;
    let Some(rt1) = t1.refresh_token.clone() else {
        log.should(
            !ctx.c1.discovery["grant_types_supported"]
                .as_array()
                .is_some_and(|g| g.iter().any(|x| x == "refresh_token")),
            "OIDCD-3",
            "no refresh token issued, and refresh_token is not advertised",
        );
        log.skip("no refresh token was issued");
        return Ok(());
    };
    log.check(
        rt1.bytes().all(|b| (0x20..=0x7e).contains(&b)),
        "RFC6749-A.17",
        "refresh token uses only VSCHAR characters",
    );
    // Refresh with the same client and certificate.
    let r = ctx
        .token_call(log, &ctx.c1, refresh_form(ctx, &ctx.c1, &rt1), true)
        .await?;
    if !log.check(
        r.status.as_u16() == 200,
        "RFC6749-6",
        format!("refresh succeeds (got {} {})", r.status, r.error()),
    ) {
        anyhow::bail!("refresh failed");
    }
    let at2 = r.str("access_token").unwrap_or_default().to_owned();
    log.check(
        !at2.is_empty(),
        "RFC6749-5.1",
        "refresh returns an access token",
    );
    if !ctx.openid() {
        log.check(
            r.str("id_token").is_none(),
            "OIDCC-12.2",
            "no id_token without openid",
        );
    } else if let Some(id) = r.str("id_token") {
        let c = ctx.check_id_token(log, &ctx.c1, id, None).await;
        if let (Ok(c), Some(first)) = (c, &t1.id_token) {
            log.check(
                c["sub"] == first["sub"],
                "OIDCC-12.2",
                "refreshed ID token has the same sub",
            );
        }
    }
    ctx.check_resource_ok(log, &ctx.c1, &at2, "Bearer").await?;
    match r.str("refresh_token") {
        Some(new) if new != rt1 => {
            log.warn("FAPI2-SP-FINAL-5.3.2.1-9", "the refresh token was rotated");
            let again = ctx
                .token_call(log, &ctx.c1, refresh_form(ctx, &ctx.c1, &rt1), true)
                .await?;
            log.check(
                again.status.as_u16() == 200,
                "FAPI2-SP-FINAL-5.3.2.1-9",
                "the previous refresh token still works after rotation",
            );
        }
        _ => log.pass(
            "FAPI2-SP-FINAL-5.3.2.1-9",
            "the refresh token is not rotated",
        ),
    }
    // Without proof of possession (no client certificate).
    let r = ctx
        .token_call(log, &ctx.c1, refresh_form(ctx, &ctx.c1, &rt1), false)
        .await;
    match r {
        Err(e) => log.pass(
            "FAPI2-SP-FINAL-5.3.2.1-6",
            format!("TLS refused the request without a certificate ({e})"),
        ),
        Ok(r) => {
            expect_token_error(
                log,
                &r,
                &crate::runner::modules::holder::no_pop_errors(ctx),
                "FAPI2-SP-FINAL-5.3.2.1-4",
                if ctx.dpop() {
                    "refresh without a DPoP proof"
                } else {
                    "refresh without the client certificate"
                },
            );
        }
    }
    // DPoP: the refresh token is bound to the client's DPoP key (RFC 9449 §5).
    if ctx.dpop() {
        let other = fapi_jose::SigningKey::generate(fapi_jose::Alg::ES256, "another-key")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let url = ctx.token_url(&ctx.c1);
        let proof = ctx.proof_by(&other, "POST", &url, None, json!({}), json!({}));
        let r = ctx
            .token_call_with_proof(log, &ctx.c1, refresh_form(ctx, &ctx.c1, &rt1), proof)
            .await?;
        expect_token_error(
            log,
            &r,
            &["invalid_grant", "invalid_dpop_proof", "invalid_request"],
            "DPOP-5",
            "refresh with a proof by another DPoP key",
        );
    }
    // Client 2's tokens are useless to client 1.
    let (_, t2) = ctx.flow(log, &ctx.c2, ctx.req()).await?;
    ctx.check_resource_refused(
        log,
        &ctx.c1,
        &t2.access_token,
        true,
        "FAPI2-SP-FINAL-5.3.2.1-4",
        "client 2's access token over client 1's certificate is refused",
    )
    .await?;
    if let Some(rt2) = &t2.refresh_token {
        let r = ctx
            .token_call(log, &ctx.c1, refresh_form(ctx, &ctx.c1, rt2), true)
            .await?;
        expect_token_error(
            log,
            &r,
            &["invalid_grant", "invalid_client", "invalid_request"],
            "RFC6749-6",
            "client 2's refresh token used by client 1",
        );
    }
    Ok(())
}
