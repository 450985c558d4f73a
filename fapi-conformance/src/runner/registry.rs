//! The module table of the FAPI 2.0 final AS plans (standards digest §2.2), with what each
//! module needs. A module whose need the AS (or the variant) cannot meet is SKIPPED with
//! the reason. The Message Signing-only modules run in the `signed_non_repudiation`
//! variants (bodies in `modules/signed.rs`); the shared flow code in `ctx.rs` makes every
//! SP module send a signed request object and read JARM responses in those variants.

use super::ctx::Ctx;
use super::log::Log;
use super::modules::{
    authz, discovery, dpop as dp, flows, holder, refresh, signed as sg, token, uk,
};
use super::variant::{Capabilities, Profile, RequestMethod, SenderConstrain, Variant};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub const NO_DPOP: &str = "the AS does not advertise DPoP (dpop_signing_alg_values_supported)";
pub const NO_SIGNED: &str = "signed requests not supported yet (issue 4)";
/// JARM without signed requests: the Message Signing plan pairs them in this runner.
pub const NO_JARM_UNSIGNED: &str =
    "fapi_response_mode=jarm is run only with fapi_request_method=signed_non_repudiation";
pub const NO_UK_OB: &str = "UK Open Banking profile: the AS does not take openbanking_intent_id in the claims parameter (claims_parameter_supported, claims_supported), or the kit's resource server (resource_base_url) does not answer";
pub const PREFIX: &str = "fapi2-security-profile-final-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// In the Security Profile plan (and the Message Signing plan).
    Sp,
    /// Only in the Message Signing plan (needs signed request objects).
    MsOnly,
}

#[derive(Debug, Clone, Copy)]
pub enum Need {
    OpenId,
    PrivateKeyJwt,
    Dpop,
    Signed,
    UkOb,
    /// Another ecosystem's profile (never plain_fapi).
    Ecosystem(&'static str),
}

pub type Fut = Pin<Box<dyn Future<Output = Log> + Send>>;
pub type Runner = fn(Arc<Ctx>) -> Fut;

pub struct Module {
    pub name: &'static str,
    pub plan: Plan,
    pub needs: &'static [Need],
    /// Waits on the real clock (runs outside the concurrency limit).
    pub slow: bool,
    pub run: Option<Runner>,
}

impl Module {
    pub fn test_name(&self) -> String {
        format!("{PREFIX}{}", self.name)
    }

    /// Why this module does not run for `v` against an AS with `caps`.
    pub fn skip_reason(&self, v: &Variant, caps: &Capabilities) -> Option<String> {
        for n in self.needs {
            let why = match n {
                Need::Dpop if !caps.dpop => Some(NO_DPOP.to_owned()),
                Need::Dpop if v.sender_constrain != SenderConstrain::Dpop => {
                    Some("not applicable to sender_constrain=mtls".to_owned())
                }
                Need::Signed if !caps.signed_requests => Some(NO_SIGNED.to_owned()),
                Need::Signed if v.fapi_request_method != RequestMethod::SignedNonRepudiation => {
                    Some(
                        "Message Signing plan only (fapi_request_method=signed_non_repudiation)"
                            .to_owned(),
                    )
                }
                Need::UkOb if !caps.uk_ob_resources => Some(NO_UK_OB.to_owned()),
                Need::UkOb if v.fapi_profile != Profile::OpenbankingUk => {
                    Some("fapi_profile=openbanking_uk only".to_owned())
                }
                Need::Ecosystem(e) => Some(format!("{e} profile only (not plain_fapi)")),
                Need::OpenId if !v.openid() => {
                    Some("not applicable to openid=plain_oauth".to_owned())
                }
                Need::PrivateKeyJwt if !v.pkjwt() => Some(
                    "not applicable to client_auth_type=mtls (private_key_jwt only)".to_owned(),
                ),
                _ => None,
            };
            if why.is_some() {
                return why;
            }
        }
        if self.run.is_none() {
            return Some("not implemented in this runner yet".to_owned());
        }
        None
    }

    /// Whether `filter` (a name, a full test name, or part of one) selects this module.
    pub fn matches(&self, filter: &str) -> bool {
        let f = filter.strip_prefix(PREFIX).unwrap_or(filter);
        self.name == f || self.name.contains(f)
    }
}

/// Wrap `async fn(&Ctx, &mut Log) -> anyhow::Result<()>` as a [`Runner`].
macro_rules! run {
    ($f:path $(, $arg:expr)*) => {
        Some(|ctx: Arc<Ctx>| -> Fut {
            Box::pin(async move {
                let mut log = Log::default();
                if let Err(e) = $f(&ctx, &mut log $(, $arg)*).await {
                    log.fail("", format!("module stopped: {e:#}"));
                }
                log
            })
        })
    };
}

const fn m(name: &'static str, needs: &'static [Need], run: Option<Runner>) -> Module {
    Module {
        name,
        plan: Plan::Sp,
        needs,
        slow: false,
        run,
    }
}

const fn ms(name: &'static str, run: Option<Runner>) -> Module {
    Module {
        name,
        plan: Plan::MsOnly,
        needs: &[Need::Signed],
        slow: false,
        run,
    }
}

const fn dpop(name: &'static str, run: Option<Runner>) -> Module {
    m(name, &[Need::Dpop], run)
}

/// Every module of the two plans, in the suite's order.
pub fn modules() -> Vec<Module> {
    use Need::*;
    vec![
        m(
            "discovery-end-point-verification",
            &[],
            run!(discovery::discovery),
        ),
        m("happy-flow", &[], run!(flows::happy_flow)),
        m(
            "user-rejects-authentication",
            &[],
            run!(flows::user_rejects),
        ),
        ms(
            "ensure-request-object-with-multiple-aud-succeeds",
            run!(sg::multiple_aud),
        ),
        m(
            "ensure-authorization-request-without-state-success",
            &[],
            run!(flows::without_state),
        ),
        m(
            "ensure-authorization-request-without-nonce-success",
            &[OpenId],
            run!(flows::without_nonce),
        ),
        m(
            "ensure-authorization-request-with-64-char-nonce-success",
            &[OpenId],
            run!(flows::nonce_64),
        ),
        m(
            "ensure-other-scope-order-succeeds",
            &[],
            run!(flows::other_scope_order),
        ),
        m(
            "test-claims-parameter-identity-claims",
            &[OpenId],
            run!(flows::claims_parameter),
        ),
        m(
            "access-token-type-header-case-sensitivity",
            &[],
            run!(flows::token_type_case),
        ),
        ms(
            "ensure-request-object-with-nbf-8-seconds-in-the-future-is-accepted",
            run!(sg::nbf_8s_future),
        ),
        dpop("check-dpop-proof-nbf-exp", run!(dp::nbf_exp)),
        dpop(
            "ensure-dpopproof-with-iat-10seconds-before-succeeds",
            run!(dp::iat_offset, -10),
        ),
        dpop(
            "ensure-dpopproof-with-iat-10seconds-after-succeeds",
            run!(dp::iat_offset, 10),
        ),
        dpop(
            "ensure-mismatched-dpop-jkt-fails",
            run!(dp::mismatched_jkt_at_par),
        ),
        dpop(
            "ensure-token-endpoint-fails-with-mismatched-dpop-proof-jkt",
            run!(dp::mismatched_key_at_token, false),
        ),
        dpop(
            "ensure-token-endpoint-fails-with-mismatched-dpop-jkt",
            run!(dp::mismatched_key_at_token, true),
        ),
        dpop(
            "ensure-dpopproof-at-par-endpoint-binding-success",
            run!(dp::binding_success, false),
        ),
        dpop(
            "ensure-dpop-auth-code-binding-success",
            run!(dp::binding_success, true),
        ),
        m(
            "ensure-different-nonce-inside-and-outside-request-object",
            &[OpenId],
            run!(flows::different_outside, "nonce"),
        ),
        m(
            "ensure-different-state-inside-and-outside-request-object",
            &[],
            run!(flows::different_outside, "state"),
        ),
        m(
            "ensure-authorization-request-with-long-nonce",
            &[OpenId],
            run!(flows::long_value, "nonce"),
        ),
        m(
            "ensure-authorization-request-with-long-state",
            &[],
            run!(flows::long_value, "state"),
        ),
        ms(
            "ensure-request-object-without-exp-fails",
            run!(sg::without_claim, "exp"),
        ),
        ms(
            "ensure-request-object-without-nbf-fails",
            run!(sg::without_claim, "nbf"),
        ),
        m(
            "state-only-outside-request-object-not-used",
            &[],
            run!(flows::state_only_outside),
        ),
        m(
            "ensure-request-object-without-redirect-uri-fails",
            &[],
            run!(authz::without_redirect_uri),
        ),
        ms("ensure-expired-request-object-fails", run!(sg::expired)),
        ms(
            "ensure-request-object-with-bad-aud-fails",
            run!(sg::bad_aud),
        ),
        ms(
            "ensure-request-object-with-exp-over-60-fails",
            run!(sg::exp_over_60),
        ),
        Module {
            needs: &[Signed, Ecosystem("ConnectID (AU)")],
            ..ms(
                "australia-connectid-ensure-request-object-with-exp-over-10-fails",
                None,
            )
        },
        ms(
            "ensure-request-object-with-nbf-over-60-fails",
            run!(sg::nbf_over_60),
        ),
        Module {
            needs: &[Signed, Ecosystem("ConnectID (AU)")],
            ..ms(
                "australia-connectid-ensure-request-object-with-nbf-over-15-fails",
                None,
            )
        },
        ms(
            "ensure-signed-request-object-with-RS256-fails",
            run!(sg::bad_signature, "rs256"),
        ),
        ms(
            "ensure-request-object-signature-algorithm-is-not-none",
            run!(sg::bad_signature, "none"),
        ),
        ms(
            "ensure-request-object-with-invalid-signature-fails",
            run!(sg::bad_signature, "bad-signature"),
        ),
        ms(
            "ensure-matching-key-in-authorization-request",
            run!(sg::matching_key),
        ),
        ms(
            "ensure-unsigned-request-at-par-endpoint-fails",
            run!(sg::unsigned_at_par),
        ),
        m(
            "ensure-registered-redirect-uri",
            &[],
            run!(authz::unregistered_redirect_uri, false),
        ),
        m(
            "plain-fapi-tolerate-unregistered-redirect-uri",
            &[],
            run!(authz::unregistered_redirect_uri, true),
        ),
        m(
            "ensure-unsigned-authorization-request-without-using-par-fails",
            &[],
            run!(authz::without_par),
        ),
        m(
            "ensure-redirect-uri-in-authorization-request",
            &[],
            run!(authz::without_redirect_uri),
        ),
        m(
            "ensure-response-type-code-idtoken-fails",
            &[],
            run!(authz::response_type, "code id_token"),
        ),
        m(
            "australia-connectid-ensure-invalid-purpose-fails",
            &[Ecosystem("ConnectID (AU)")],
            None,
        ),
        m(
            "ensure-response-type-token-fails",
            &[],
            run!(authz::response_type, "token"),
        ),
        m(
            "ensure-client-id-in-token-endpoint",
            &[],
            run!(token::client_id_in_token_endpoint),
        ),
        m(
            "ensure-holder-of-key-required",
            &[],
            run!(holder::holder_of_key),
        ),
        m(
            "ensure-authorization-code-is-bound-to-client",
            &[],
            run!(token::code_bound_to_client),
        ),
        m(
            "attempt-reuse-authorization-code-after-one-second",
            &[],
            run!(token::reuse_code),
        ),
        Module {
            slow: true,
            ..m(
                "ensure-token-endpoint-fails-with-expired-auth-code",
                &[],
                run!(token::expired_code),
            )
        },
        m(
            "ensure-signed-client-assertion-with-RS256-fails",
            &[PrivateKeyJwt],
            run!(token::assertion_rs256),
        ),
        m(
            "ensure-client-assertion-in-token-endpoint",
            &[PrivateKeyJwt],
            run!(token::assertion_missing),
        ),
        m(
            "ensure-client-assertion-with-exp-is-5-minutes-in-past-fails",
            &[PrivateKeyJwt],
            run!(token::assertion_expired),
        ),
        m(
            "ensure-client-assertion-with-wrong-aud-fails",
            &[PrivateKeyJwt],
            run!(token::assertion_wrong_aud),
        ),
        m(
            "ensure-client-assertion-with-no-sub-fails",
            &[PrivateKeyJwt],
            run!(token::assertion_no_sub),
        ),
        dpop("dpop-negative-tests", run!(dp::negative_tests)),
        m("refresh-token", &[], run!(refresh::refresh_token)),
        m(
            "ensure-server-handles-non-matching-intent-id",
            &[UkOb],
            run!(uk::non_matching_intent),
        ),
        m(
            "test-essential-acr-sca-claim",
            &[UkOb, OpenId],
            run!(uk::essential_acr_sca),
        ),
        m(
            "brazil-ensure-bad-payment-signature-fails",
            &[Ecosystem("Open Finance Brazil")],
            None,
        ),
        m(
            "australia-connectid-test-claims-parameter-idtoken-identity-claims",
            &[Ecosystem("ConnectID (AU)")],
            None,
        ),
        m(
            "par-ensure-reused-request-uri-prior-to-auth-completion-succeeds",
            &[],
            run!(authz::reused_before_completion),
        ),
        m(
            "par-attempt-reuse-request_uri",
            &[],
            run!(authz::reuse_request_uri),
        ),
        Module {
            slow: true,
            ..m(
                "par-attempt-to-use-expired-request_uri",
                &[],
                run!(authz::expired_request_uri),
            )
        },
        m(
            "par-ensure-jwt-client-assertions-nbf-8-seconds-in-the-future-is-accepted",
            &[PrivateKeyJwt],
            run!(token::par_nbf_8s),
        ),
        m(
            "par-ensure-jwt-client-assertions-nbf-over-60-seconds-in-the-future-fails",
            &[PrivateKeyJwt],
            run!(token::par_nbf_over_60s),
        ),
        m(
            "par-attempt-to-use-request_uri-for-different-client",
            &[],
            run!(authz::request_uri_other_client),
        ),
        m(
            "par-authorization-request-containing-request_uri-form-param",
            &[],
            run!(authz::request_uri_in_par),
        ),
        m(
            "par-attempt-invalid-http-method",
            &[],
            run!(authz::invalid_http_method),
        ),
        m("par-ensure-pkce-required", &[], run!(authz::pkce_required)),
        m(
            "ensure-pkce-code-verifier-required",
            &[],
            run!(token::pkce_verifier_required),
        ),
        m(
            "incorrect-pkce-code-verifier-rejected",
            &[],
            run!(token::incorrect_pkce_verifier),
        ),
        m("par-plain-pkce-rejected", &[], run!(authz::plain_pkce)),
        ms(
            "par-authorization-request-containing-request_uri",
            run!(sg::request_uri_inside),
        ),
        m(
            "par-without-duplicate-parameters",
            &[],
            run!(flows::without_duplicates),
        ),
        m(
            "par-test-array-as-audience-fails",
            &[PrivateKeyJwt],
            run!(token::par_array_aud),
        ),
        m(
            "par-test-par-endpoint-url-as-audience-fails",
            &[PrivateKeyJwt],
            run!(token::par_endpoint_aud),
        ),
        m(
            "par-test-token-endpoint-url-as-audience-fails",
            &[PrivateKeyJwt],
            run!(token::token_endpoint_aud),
        ),
    ]
}

/// The requirement(s) a module exists to check, listed first in its result.
pub fn primary(name: &str) -> &'static [&'static str] {
    match name {
        "discovery-end-point-verification" => &["FAPI2-SP-FINAL-5.3.2.1-1"],
        "happy-flow" => &["FAPI2-SP-FINAL-5.3.2.1-4", "FAPI2-SP-FINAL-5.3.2.1-5"],
        "user-rejects-authentication" => &["FAPI2-SP-FINAL-5.3.2.2-13"],
        "ensure-authorization-request-without-state-success" => &["OIDCC-3.2.2.5"],
        "ensure-authorization-request-without-nonce-success" => &["OIDCC-3.1.3.7-11"],
        "ensure-authorization-request-with-64-char-nonce-success"
        | "ensure-authorization-request-with-long-nonce" => &["FAPI2-SP-FINAL-5.3.2.2-14"],
        "ensure-other-scope-order-succeeds" => &["RFC6749-3.3"],
        "test-claims-parameter-identity-claims" => &["OIDCC-5.5"],
        "access-token-type-header-case-sensitivity" => &["RFC9110-11.1", "FAPI2-SP-FINAL-5.3.4"],
        "ensure-different-nonce-inside-and-outside-request-object"
        | "ensure-different-state-inside-and-outside-request-object"
        | "state-only-outside-request-object-not-used" => &["FAPI2-SP-FINAL-5.3.3.2-6"],
        "ensure-authorization-request-with-long-state" => &["FAPI2-SP-FINAL-5.3.2.2"],
        "ensure-request-object-without-redirect-uri-fails"
        | "ensure-redirect-uri-in-authorization-request" => &["FAPI2-SP-FINAL-5.3.2.2-6"],
        "ensure-registered-redirect-uri" | "plain-fapi-tolerate-unregistered-redirect-uri" => {
            &["FAPI2-SP-FINAL-5.3.2.1-7", "PAR-2.4"]
        }
        "ensure-unsigned-authorization-request-without-using-par-fails" => {
            &["FAPI2-SP-FINAL-5.3.2.2-3"]
        }
        "ensure-response-type-code-idtoken-fails" | "ensure-response-type-token-fails" => {
            &["FAPI2-SP-FINAL-5.3.2.2-1"]
        }
        "ensure-client-id-in-token-endpoint" | "ensure-client-assertion-in-token-endpoint" => {
            &["FAPI2-SP-FINAL-5.3.2.1-6"]
        }
        "ensure-holder-of-key-required" => &[
            "FAPI2-SP-FINAL-5.3.2.1-4",
            "FAPI2-SP-FINAL-5.2.1-2",
            "FAPI2-SP-FINAL-5.2.2",
        ],
        "ensure-authorization-code-is-bound-to-client" => &["RFC6749-4.1.3"],
        "attempt-reuse-authorization-code-after-one-second" => &["FAPI2-SP-FINAL-5.3.2.2-9"],
        "ensure-token-endpoint-fails-with-expired-auth-code" => &["FAPI2-SP-FINAL-5.3.2.1-11"],
        "ensure-signed-client-assertion-with-RS256-fails" => &["FAPI2-SP-FINAL-5.4.1-1"],
        "ensure-client-assertion-with-exp-is-5-minutes-in-past-fails"
        | "ensure-client-assertion-with-no-sub-fails" => &["RFC7523-3"],
        "ensure-client-assertion-with-wrong-aud-fails"
        | "par-test-array-as-audience-fails"
        | "par-test-par-endpoint-url-as-audience-fails"
        | "par-test-token-endpoint-url-as-audience-fails" => &["FAPI2-SP-FINAL-5.3.2.1-8"],
        "refresh-token" => &["FAPI2-SP-FINAL-5.3.2.1-9", "FAPI2-SP-FINAL-5.3.2.1-4"],
        "par-ensure-reused-request-uri-prior-to-auth-completion-succeeds" => {
            &["FAPI2-SP-FINAL-5.3.2.2-note-3"]
        }
        "par-attempt-reuse-request_uri" => &["PAR-7.3"],
        "par-attempt-to-use-expired-request_uri" => &["FAPI2-SP-FINAL-5.3.2.2-12", "PAR-2.2"],
        "par-ensure-jwt-client-assertions-nbf-8-seconds-in-the-future-is-accepted"
        | "par-ensure-jwt-client-assertions-nbf-over-60-seconds-in-the-future-fails" => {
            &["FAPI2-SP-FINAL-5.3.2.1-13"]
        }
        "par-attempt-to-use-request_uri-for-different-client" => &["PAR-3-3"],
        "par-authorization-request-containing-request_uri-form-param" => &["PAR-2.1"],
        "par-attempt-invalid-http-method" => &["PAR-2.3"],
        "par-ensure-pkce-required" | "par-plain-pkce-rejected" => &["FAPI2-SP-FINAL-5.3.2.2-5"],
        "ensure-pkce-code-verifier-required" | "incorrect-pkce-code-verifier-rejected" => {
            &["FAPI2-SP-FINAL-5.3.2.2-5", "RFC7636-4.6"]
        }
        "par-without-duplicate-parameters" => &["PAR-4"],
        "check-dpop-proof-nbf-exp" => &["DPOP-4.3"],
        "ensure-dpopproof-with-iat-10seconds-before-succeeds"
        | "ensure-dpopproof-with-iat-10seconds-after-succeeds" => &["FAPI2-SP-FINAL-5.3.2.1-13"],
        "ensure-mismatched-dpop-jkt-fails"
        | "ensure-token-endpoint-fails-with-mismatched-dpop-proof-jkt"
        | "ensure-token-endpoint-fails-with-mismatched-dpop-jkt"
        | "ensure-dpopproof-at-par-endpoint-binding-success"
        | "ensure-dpop-auth-code-binding-success" => &["FAPI2-SP-FINAL-5.3.2.1-12", "DPOP-10.1"],
        "dpop-negative-tests" => &["FAPI2-SP-FINAL-5.3.4", "DPOP-4.3", "DPOP-7.1"],
        "ensure-request-object-with-multiple-aud-succeeds"
        | "ensure-request-object-with-nbf-8-seconds-in-the-future-is-accepted"
        | "ensure-request-object-without-exp-fails"
        | "ensure-request-object-without-nbf-fails"
        | "ensure-expired-request-object-fails"
        | "ensure-request-object-with-bad-aud-fails"
        | "ensure-request-object-with-exp-over-60-fails"
        | "ensure-request-object-with-nbf-over-60-fails"
        | "ensure-unsigned-request-at-par-endpoint-fails" => &["FAPI2-MS-FINAL-5.3"],
        "ensure-signed-request-object-with-RS256-fails"
        | "ensure-request-object-signature-algorithm-is-not-none" => &["FAPI2-SP-FINAL-5.4.1-1"],
        "ensure-request-object-with-invalid-signature-fails"
        | "ensure-matching-key-in-authorization-request" => &["RFC9101-6.2"],
        "par-authorization-request-containing-request_uri" => &["PAR-2.1"],
        "ensure-server-handles-non-matching-intent-id" => &["OIDCC-3.1.2.6", "RFC6749-4.1.2.1"],
        "test-essential-acr-sca-claim" => &["OIDCC-5.5.1.1"],
        _ => &[],
    }
}
