//! Message Signing plan only: signed request objects at PAR (FAPI 2.0 MS §5.3.1, RFC 9101).
//! Each refusal module pushes an object that differs from a valid one in one respect
//! only; the happy path of the same variant shows the valid one is accepted.

use crate::Pkce;
use crate::runner::checks::expect_par_error;
use crate::runner::ctx::{ClientAuth, Ctx, Req, Ro};
use crate::runner::log::Log;
use crate::tpp::{Auth, now};
use serde_json::{Value, json};

const TYP: &str = "oauth-authz-req+jwt";
const RO_ERRORS: &[&str] = &["invalid_request_object", "invalid_request"];

/// The full flow with these request object claim overrides; must succeed.
async fn accepted(
    ctx: &Ctx,
    log: &mut Log,
    claims: Value,
    req_id: &str,
    what: &str,
) -> anyhow::Result<()> {
    let mut r = ctx.req();
    r.ro_claims = claims;
    let (_, t) = ctx.flow(log, &ctx.c1, r).await?;
    log.pass(req_id, format!("{what}: accepted and the flow completed"));
    ctx.check_resource_ok(log, &ctx.c1, &t.access_token, "Bearer")
        .await?;
    Ok(())
}

/// Push `req` for client 1: PAR must refuse it (400, `invalid_request_object` or
/// `invalid_request`).
async fn refused_at_par(
    ctx: &Ctx,
    log: &mut Log,
    req: Req,
    req_id: &str,
    what: &str,
) -> anyhow::Result<()> {
    let r = ctx
        .par(log, &ctx.c1, &Pkce::new(), &req, &ClientAuth::Normal)
        .await?;
    expect_par_error(log, &r, &[400], RO_ERRORS, req_id, what);
    Ok(())
}

async fn claims_refused(
    ctx: &Ctx,
    log: &mut Log,
    claims: Value,
    req_id: &str,
    what: &str,
) -> anyhow::Result<()> {
    let mut r = ctx.req();
    r.ro_claims = claims;
    refused_at_par(ctx, log, r, req_id, what).await
}

pub async fn multiple_aud(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let aud = json!({"aud": ["https://audience.example.invalid", ctx.issuer()]});
    accepted(
        ctx,
        log,
        aud,
        "FAPI2-MS-FINAL-5.3",
        "request object aud array holding the issuer and another value",
    )
    .await
}

pub async fn nbf_8s_future(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let t = now();
    let c = json!({"nbf": t + 8, "exp": t + 8 + 300});
    accepted(
        ctx,
        log,
        c,
        "FAPI2-MS-FINAL-5.3",
        "request object nbf 8 seconds in the future",
    )
    .await
}

pub async fn without_claim(ctx: &Ctx, log: &mut Log, claim: &str) -> anyhow::Result<()> {
    let mut c = json!({});
    c[claim] = Value::Null;
    claims_refused(
        ctx,
        log,
        c,
        "FAPI2-MS-FINAL-5.3",
        &format!("request object without {claim}"),
    )
    .await
}

pub async fn expired(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let t = now();
    claims_refused(
        ctx,
        log,
        json!({"nbf": t - 600, "exp": t - 60}),
        "RFC9101-6.3",
        "expired request object",
    )
    .await
}

pub async fn bad_aud(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let aud = json!({"aud": "https://www.example.com/bad-aud"});
    claims_refused(
        ctx,
        log,
        aud,
        "FAPI2-MS-FINAL-5.3",
        "request object with a wrong aud",
    )
    .await
}

pub async fn exp_over_60(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let t = now();
    claims_refused(
        ctx,
        log,
        json!({"nbf": t, "exp": t + 3600 + 60}),
        "FAPI2-MS-FINAL-5.3",
        "request object exp over 60 minutes after nbf",
    )
    .await
}

pub async fn nbf_over_60(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let t = now();
    claims_refused(
        ctx,
        log,
        json!({"nbf": t - 3600 - 60, "exp": t + 60}),
        "FAPI2-MS-FINAL-5.3",
        "request object nbf over 60 minutes in the past",
    )
    .await
}

/// A compact JWS with a hand-made header (algorithms our signer will not use).
fn forged(header: Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        fapi_jose::b64(header.to_string().as_bytes()),
        fapi_jose::b64(claims.to_string().as_bytes()),
        fapi_jose::b64(sig)
    )
}

/// Client 1's valid claims for a standard request, and its key's `kid`.
fn claims_and_valid(ctx: &Ctx, r: &Req) -> anyhow::Result<(Value, String, String)> {
    let tpp = &ctx.c1;
    let Auth::PrivateKeyJwt(key) = &tpp.auth else {
        anyhow::bail!("signed requests need a private_key_jwt client key");
    };
    let claims = tpp.request_object_claims(&ctx.par_params(tpp, &Pkce::new(), r), json!({}));
    let good = key
        .sign_jwt(Some(TYP), &claims)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((claims, good, key.kid().to_string()))
}

/// `what`: `rs256`, `none` or `bad-signature`.
pub async fn bad_signature(ctx: &Ctx, log: &mut Log, what: &str) -> anyhow::Result<()> {
    let mut r = ctx.req();
    let (claims, good, kid) = claims_and_valid(ctx, &r)?;
    let sig = fapi_jose::b64_decode(good.rsplit('.').next().unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (jwt, req_id, desc) = match what {
        "rs256" => (
            forged(
                json!({"alg": "RS256", "typ": TYP, "kid": kid}),
                &claims,
                &sig,
            ),
            "FAPI2-SP-FINAL-5.4.1-1",
            "request object with alg RS256",
        ),
        "none" => (
            forged(json!({"alg": "none", "typ": TYP}), &claims, b""),
            "FAPI2-SP-FINAL-5.4.1-1",
            "request object with alg none",
        ),
        _ => {
            let mut bad = sig.clone();
            for b in bad.iter_mut().take(8) {
                *b ^= 0x5a;
            }
            let parts: Vec<&str> = good.splitn(3, '.').collect();
            (
                format!("{}.{}.{}", parts[0], parts[1], fapi_jose::b64(&bad)),
                "RFC9101-6.2",
                "request object with an invalid signature",
            )
        }
    };
    r.ro = Ro::Raw(jwt);
    refused_at_par(ctx, log, r, req_id, desc).await
}

/// Client 1's request object signed with client 2's key.
pub async fn matching_key(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let mut r = ctx.req();
    let (claims, _, _) = claims_and_valid(ctx, &r)?;
    let Auth::PrivateKeyJwt(key2) = &ctx.c2.auth else {
        anyhow::bail!("client 2 has no private key");
    };
    let jwt = key2
        .sign_jwt(Some(TYP), &claims)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    r.ro = Ro::Raw(jwt);
    refused_at_par(
        ctx,
        log,
        r,
        "RFC9101-6.2",
        "client 1's request object signed with client 2's key",
    )
    .await
}

pub async fn unsigned_at_par(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let mut r = ctx.req();
    r.ro = Ro::Unsigned;
    let resp = ctx
        .par(log, &ctx.c1, &Pkce::new(), &r, &ClientAuth::Normal)
        .await?;
    expect_par_error(
        log,
        &resp,
        &[400, 401],
        &[
            "invalid_request",
            "invalid_request_object",
            "invalid_client",
        ],
        "FAPI2-MS-FINAL-5.3",
        "unsigned request for a client that must sign",
    );
    Ok(())
}

/// par-authorization-request-containing-request_uri: `request_uri` inside the object.
pub async fn request_uri_inside(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let r = ctx.req().set(
        "request_uri",
        &format!(
            "urn:ietf:params:oauth:request_uri:{}",
            crate::tpp::random(16)
        ),
    );
    refused_at_par(
        ctx,
        log,
        r,
        "PAR-2.1",
        "request_uri inside the request object",
    )
    .await
}
