//! The DPoP modules of the FAPI 2.0 SP plan (RFC 9449; FAPI 2.0 §5.3.2.1-5/-12/-13,
//! §5.3.4): proof claims the AS must cope with, the `iat` skew window, the authorization
//! code binding at PAR (`dpop_jkt` and the PAR proof) and its checks at the token endpoint,
//! and the protected resource's proof checks (`dpop-negative-tests`).

use crate::Pkce;
use crate::runner::checks::{expect_par_error, expect_token_error};
use crate::runner::ctx::{ClientAuth, Ctx, DpopPar, Tokens};
use crate::runner::log::Log;
use crate::tpp::{Reply, Tpp, now};
use fapi_jose::{Alg, SigningKey};
use serde_json::{Value, json};

fn new_key() -> anyhow::Result<SigningKey> {
    SigningKey::generate(Alg::ES256, "runner-other-dpop-key").map_err(|e| anyhow::anyhow!("{e}"))
}

fn jkt(k: &SigningKey) -> String {
    k.public_jwk().thumbprint_s256().unwrap_or_default()
}

/// The resource accepted the request: 200, or (userinfo standing in for the resource
/// without the openid scope) 403 `insufficient_scope` after the token and proof passed.
fn accepted(ctx: &Ctx, r: &Reply) -> bool {
    let s = r.status.as_u16();
    s == 200 || (!ctx.openid() && s == 403 && r.error() == "insufficient_scope")
}

fn refused(r: &Reply) -> bool {
    matches!(r.status.as_u16(), 400 | 401)
}

/// Push (binding as `par`), approve, and exchange the code with a proof whose claims are
/// overridden by `token_claims`; the tokens are checked as in every flow.
async fn flow_with(
    ctx: &Ctx,
    log: &mut Log,
    tpp: &Tpp,
    par: DpopPar,
    token_claims: Value,
) -> anyhow::Result<Tokens> {
    let mut req = ctx.req();
    req.dpop_par = par;
    let (p, code) = ctx.authorize(log, tpp, req).await?;
    let proof = ctx.proof(
        tpp,
        "POST",
        &ctx.token_url(tpp),
        None,
        json!({}),
        token_claims,
    );
    let r = ctx
        .token_call_with_proof(log, tpp, ctx.code_form(tpp, &code, &p.pkce), proof)
        .await?;
    ctx.check_tokens(log, tpp, &r, p.req.nonce.as_deref()).await
}

/// GET the resource with one proof for `token`, header and claims overridden.
async fn resource_with(
    ctx: &Ctx,
    log: &mut Log,
    tpp: &Tpp,
    token: &str,
    header: Value,
    claims: Value,
) -> anyhow::Result<Reply> {
    let url = ctx.resource_url(tpp);
    let proof = ctx.proof(tpp, "GET", &url, Some(token), header, claims);
    ctx.resource_dpop(log, tpp, "DPoP", token, &[proof]).await
}

/// check-dpop-proof-nbf-exp: proofs carrying `nbf` (now) and `exp` (in 5 minutes) work at
/// the token endpoint and the resource.
pub async fn nbf_exp(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let edits = || json!({"nbf": now(), "exp": now() + 300});
    let t = flow_with(ctx, log, &ctx.c1, DpopPar::Proof, edits()).await?;
    let r = resource_with(ctx, log, &ctx.c1, &t.access_token, json!({}), edits()).await?;
    log.check(
        accepted(ctx, &r),
        "DPOP-4.3",
        format!(
            "the resource accepts a proof with nbf and exp (got {} {})",
            r.status,
            r.error()
        ),
    );
    Ok(())
}

/// ensure-dpopproof-with-iat-10seconds-before/after-succeeds: `iat` `offset` seconds off
/// at PAR, the token endpoint and the resource (FAPI 2.0 §5.3.2.1-13).
pub async fn iat_offset(ctx: &Ctx, log: &mut Log, offset: i64) -> anyhow::Result<()> {
    let tpp = &ctx.c1;
    let skewed = || json!({"iat": now() + offset});
    let par_proof = ctx.proof(tpp, "POST", &ctx.par_url(tpp), None, json!({}), skewed());
    let t = flow_with(ctx, log, tpp, DpopPar::Custom(par_proof), skewed()).await?;
    log.pass(
        "FAPI2-SP-FINAL-5.3.2.1-13",
        format!("PAR and token endpoint accepted proofs with iat {offset:+} s"),
    );
    let r = resource_with(ctx, log, tpp, &t.access_token, json!({}), skewed()).await?;
    log.check(
        accepted(ctx, &r),
        "FAPI2-SP-FINAL-5.3.2.1-13",
        format!(
            "the resource accepts a proof with iat {offset:+} s (got {} {})",
            r.status,
            r.error()
        ),
    );
    Ok(())
}

/// ensure-mismatched-dpop-jkt-fails: `dpop_jkt` of another key than the PAR proof's.
pub async fn mismatched_jkt_at_par(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let tpp = &ctx.c1;
    let other = new_key()?;
    let mut req = ctx.req().set("dpop_jkt", &jkt(&other));
    req.dpop_par = DpopPar::Proof;
    let r = ctx
        .par(log, tpp, &Pkce::new(), &req, &ClientAuth::Normal)
        .await?;
    expect_par_error(
        log,
        &r,
        &[400],
        &["invalid_request", "invalid_dpop_proof"],
        "DPOP-10.1",
        "dpop_jkt differs from the key of the PAR DPoP proof",
    );
    Ok(())
}

/// ensure-token-endpoint-fails-with-mismatched-dpop-proof-jkt (`par` = Proof) and
/// ensure-token-endpoint-fails-with-mismatched-dpop-jkt (`par` = Jkt): the code is bound
/// to the client's key; a proof by another key cannot redeem it.
pub async fn mismatched_key_at_token(ctx: &Ctx, log: &mut Log, by_jkt: bool) -> anyhow::Result<()> {
    let tpp = &ctx.c1;
    let mut req = ctx.req();
    req.dpop_par = if by_jkt { DpopPar::Jkt } else { DpopPar::Proof };
    let (p, code) = ctx.authorize(log, tpp, req).await?;
    let other = new_key()?;
    let proof = ctx.proof_by(
        &other,
        "POST",
        &ctx.token_url(tpp),
        None,
        json!({}),
        json!({}),
    );
    let r = ctx
        .token_call_with_proof(log, tpp, ctx.code_form(tpp, &code, &p.pkce), proof)
        .await?;
    expect_token_error(
        log,
        &r,
        &["invalid_request", "invalid_grant", "invalid_dpop_proof"],
        "DPOP-10.1",
        if by_jkt {
            "code bound by dpop_jkt, redeemed with a proof by another key"
        } else {
            "code bound by the PAR proof, redeemed with a proof by another key"
        },
    );
    Ok(())
}

/// ensure-dpopproof-at-par-endpoint-binding-success (`par` = Proof) and
/// ensure-dpop-auth-code-binding-success (`par` = Jkt): the bound code works with the key.
pub async fn binding_success(ctx: &Ctx, log: &mut Log, by_jkt: bool) -> anyhow::Result<()> {
    let par = if by_jkt { DpopPar::Jkt } else { DpopPar::Proof };
    let t = flow_with(ctx, log, &ctx.c1, par, json!({})).await?;
    ctx.check_resource_ok(log, &ctx.c1, &t.access_token, "DPoP")
        .await?;
    Ok(())
}

/// One negative (or positive) resource call of `dpop-negative-tests`.
struct Case<'a> {
    what: &'a str,
    scheme: &'a str,
    proofs: Vec<String>,
    /// Expected to be accepted (else refused with 400/401).
    ok: bool,
    /// A mismatch is a FAIL (else a WARNING: SHOULD-level in the suite).
    must: bool,
    req: &'a str,
}

/// dpop-negative-tests: a working DPoP-bound token, then the resource's proof checks
/// (RFC 9449 §4.3, §7.1), each malformed proof refused, each tolerated variation accepted.
pub async fn negative_tests(ctx: &Ctx, log: &mut Log) -> anyhow::Result<()> {
    let tpp = &ctx.c1;
    let Some(key) = tpp.dpop.clone() else {
        anyhow::bail!("client 1 has no DPoP key");
    };
    let (_, t) = ctx.flow(log, tpp, ctx.req()).await?;
    let at = t.access_token.clone();
    ctx.check_resource_ok(log, tpp, &at, "DPoP").await?;
    let url = ctx.resource_url(tpp);
    let with =
        |header: Value, claims: Value| ctx.proof(tpp, "GET", &url, Some(&at), header, claims);
    let good = || with(json!({}), json!({}));
    let good_proof = good();
    let parts: Vec<&str> = good_proof.split('.').collect();
    let (h64, c64, s64) = (
        parts[0],
        parts[1],
        parts.get(2).copied().unwrap_or_default(),
    );
    let header: Value = fapi_jose::b64_decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut no_alg = header.clone();
    if let Some(o) = no_alg.as_object_mut() {
        o.remove("alg");
        o.insert("alg2".into(), json!("ES256"));
    }
    let mut none = header.clone();
    none["alg"] = json!("none");
    let reencode = |h: &Value| fapi_jose::b64(&serde_json::to_vec(h).unwrap_or_default());
    let mut bad_sig = fapi_jose::b64_decode(s64).unwrap_or_default();
    if let Some(b) = bad_sig.first_mut() {
        *b ^= 0x5a;
    }
    let mut private = key.to_private_jwk().map_err(|e| anyhow::anyhow!("{e}"))?;
    private["kid"] = json!(key.kid());
    let other = new_key()?;
    let upper = match url::Url::parse(&url) {
        Ok(u) => url
            .replacen(u.scheme(), &u.scheme().to_uppercase(), 1)
            .replacen(
                u.host_str().unwrap_or_default(),
                &u.host_str().unwrap_or_default().to_uppercase(),
                1,
            ),
        Err(_) => url.clone(),
    };
    // The suite adds the default port only when the URL has none.
    let with_port = match url::Url::parse(&url) {
        Ok(u) if u.port().is_none() => format!(
            "{}://{}:443{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.path()
        ),
        _ => url.clone(),
    };
    let fixed_jti = || json!({"jti": "runner-fixed-jti-7"});
    let m = |what, scheme, proofs, ok, must, req| Case {
        what,
        scheme,
        proofs,
        ok,
        must,
        req,
    };
    let cases = vec![
        m(
            "two DPoP proofs",
            "DPoP",
            vec![good(), good()],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "a proof that is not a well-formed JWT",
            "DPoP",
            vec![format!("{h64}.{c64}")],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "typ missing",
            "DPoP",
            vec![with(json!({"typ": null}), json!({}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "alg missing",
            "DPoP",
            vec![format!("{}.{c64}.{s64}", reencode(&no_alg))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "jwk missing",
            "DPoP",
            vec![with(json!({"jwk": null}), json!({}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "jti missing",
            "DPoP",
            vec![with(json!({}), json!({"jti": null}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "htm missing",
            "DPoP",
            vec![with(json!({}), json!({"htm": null}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "htu missing",
            "DPoP",
            vec![with(json!({}), json!({"htu": null}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "iat missing",
            "DPoP",
            vec![with(json!({}), json!({"iat": null}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "ath missing",
            "DPoP",
            vec![with(json!({}), json!({"ath": null}))],
            false,
            true,
            "DPOP-7.1",
        ),
        m(
            "typ dpop+jwt+wrongyousee",
            "DPoP",
            vec![with(json!({"typ": "dpop+jwt+wrongyousee"}), json!({}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "alg none",
            "DPoP",
            vec![format!("{}.{c64}.", reencode(&none))],
            false,
            true,
            "FAPI2-SP-FINAL-5.4.1-1",
        ),
        m(
            "invalid signature",
            "DPoP",
            vec![format!("{h64}.{c64}.{}", fapi_jose::b64(&bad_sig))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "jwk holding the private key",
            "DPoP",
            vec![with(json!({"jwk": private}), json!({}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "htm PUT",
            "DPoP",
            vec![with(json!({}), json!({"htm": "PUT"}))],
            false,
            true,
            "DPOP-4.3",
        ),
        m(
            "htu with a query and fragment (ignored in the comparison)",
            "DPoP",
            vec![with(
                json!({}),
                json!({"htu": format!("{url}?allthedoorsonthisspaceshiphavebeen#programmedtohaveacheeryandsunnydisposition")}),
            )],
            true,
            true,
            "DPOP-4.3",
        ),
        m(
            "htu of another URL",
            "DPoP",
            vec![with(
                json!({}),
                json!({"htu": format!("{url}ohnonotagain")}),
            )],
            false,
            true,
            "DPOP-7.1",
        ),
        m(
            "iat one hour in the future",
            "DPoP",
            vec![with(json!({}), json!({"iat": now() + 3600}))],
            false,
            true,
            "DPOP-7.1",
        ),
        m(
            "iat one hour in the past",
            "DPoP",
            vec![with(json!({}), json!({"iat": now() - 3600}))],
            false,
            true,
            "DPOP-7.1",
        ),
        m(
            "first use of a fixed jti",
            "DPoP",
            vec![with(json!({}), fixed_jti())],
            true,
            true,
            "DPOP-7.1",
        ),
        m(
            "second use of the same jti",
            "DPoP",
            vec![with(json!({}), fixed_jti())],
            false,
            false,
            "DPOP-7.1",
        ),
        m(
            "ath of another token",
            "DPoP",
            vec![with(
                json!({}),
                json!({"ath": fapi_jose::sha256_b64(b"not the token")}),
            )],
            false,
            true,
            "DPOP-7.1",
        ),
        m(
            "proof signed with a different key",
            "DPoP",
            vec![ctx.proof_by(&other, "GET", &url, Some(&at), json!({}), json!({}))],
            false,
            true,
            "DPOP-7.1",
        ),
        m(
            "extra header and claims members",
            "DPoP",
            vec![with(
                json!({"tx_id": now() + 3600}),
                json!({"tx_id_key": now() + 3600}),
            )],
            true,
            true,
            "DPOP-7.2",
        ),
        m(
            "htu with upper-case scheme and host",
            "DPoP",
            vec![with(json!({}), json!({"htu": upper}))],
            true,
            false,
            "RFC3986-6.2.2",
        ),
        m(
            "htu with the scheme's default port",
            "DPoP",
            vec![with(json!({}), json!({"htu": with_port}))],
            true,
            false,
            "RFC3986-6.2.3",
        ),
        m(
            "no DPoP proof",
            "DPoP",
            vec![],
            false,
            true,
            "FAPI2-SP-FINAL-5.3.4",
        ),
        m(
            "no DPoP proof and the Bearer scheme",
            "Bearer",
            vec![],
            false,
            true,
            "DPOP-7.1",
        ),
        m(
            "a correct proof still works",
            "DPoP",
            vec![good()],
            true,
            true,
            "DPOP-7.1",
        ),
    ];
    log.note("the suite also sends the header name in capitals (DPOP); HTTP field names are case-insensitive and this HTTP stack sends them in lower case. The suite's RS256 proof needs an RSA DPoP key; this runner's key is ES256, so `alg none` and the bad signature stand in for it");
    for c in cases {
        let r = ctx
            .resource_dpop(log, tpp, c.scheme, &at, &c.proofs)
            .await?;
        let fine = if c.ok { accepted(ctx, &r) } else { refused(&r) };
        let msg = format!(
            "{}: {} (got {} {})",
            c.what,
            if c.ok {
                "accepted"
            } else {
                "refused with 400/401"
            },
            r.status,
            r.error()
        );
        if c.must {
            log.check(fine, c.req, msg);
        } else {
            log.should(fine, c.req, msg);
        }
    }
    Ok(())
}
