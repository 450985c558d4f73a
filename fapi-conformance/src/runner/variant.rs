//! Test-plan variants (the suite's variant parameters) and what the deployment supports.

use serde::Serialize;
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    PrivateKeyJwt,
    Mtls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderConstrain {
    Mtls,
    Dpop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenId {
    PlainOauth,
    OpenidConnect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    PlainFapi,
    OpenbankingUk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestMethod {
    Unsigned,
    SignedNonRepudiation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    PlainResponse,
    /// JWT-secured authorization responses (JARM, FAPI 2.0 MS §5.4).
    Jarm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub client_auth_type: ClientAuth,
    pub sender_constrain: SenderConstrain,
    pub openid: OpenId,
    pub fapi_profile: Profile,
    pub fapi_request_method: RequestMethod,
    pub fapi_response_mode: ResponseMode,
}

impl Default for Variant {
    fn default() -> Self {
        Self {
            client_auth_type: ClientAuth::PrivateKeyJwt,
            sender_constrain: SenderConstrain::Mtls,
            openid: OpenId::OpenidConnect,
            fapi_profile: Profile::PlainFapi,
            fapi_request_method: RequestMethod::Unsigned,
            fapi_response_mode: ResponseMode::PlainResponse,
        }
    }
}

impl Variant {
    /// Every combination of the three axes the issue names (plain_fapi), unsigned (the
    /// Security Profile plan), then signed with JARM (the Message Signing plan); then the
    /// UK Open Banking profile's `openid_connect` variants (the intent comes back in the
    /// ID token): both client authentications with both sender constraints unsigned, and
    /// the Message Signing one the kit's signed clients allow.
    pub fn matrix() -> Vec<Variant> {
        let mut out = Vec::new();
        for (rm, mode) in [
            (RequestMethod::Unsigned, ResponseMode::PlainResponse),
            (RequestMethod::SignedNonRepudiation, ResponseMode::Jarm),
        ] {
            for sc in [SenderConstrain::Mtls, SenderConstrain::Dpop] {
                for ca in [ClientAuth::PrivateKeyJwt, ClientAuth::Mtls] {
                    for oi in [OpenId::OpenidConnect, OpenId::PlainOauth] {
                        out.push(Variant {
                            client_auth_type: ca,
                            sender_constrain: sc,
                            openid: oi,
                            fapi_request_method: rm,
                            fapi_response_mode: mode,
                            ..Variant::default()
                        });
                    }
                }
            }
        }
        for sc in [SenderConstrain::Mtls, SenderConstrain::Dpop] {
            for ca in [ClientAuth::PrivateKeyJwt, ClientAuth::Mtls] {
                out.push(Variant {
                    client_auth_type: ca,
                    sender_constrain: sc,
                    fapi_profile: Profile::OpenbankingUk,
                    ..Variant::default()
                });
            }
        }
        out.push(Variant {
            fapi_profile: Profile::OpenbankingUk,
            fapi_request_method: RequestMethod::SignedNonRepudiation,
            fapi_response_mode: ResponseMode::Jarm,
            ..Variant::default()
        });
        out
    }

    /// Parse `key=value` pairs separated by `,` or written the suite's way
    /// (`[client_auth_type=mtls][openid=plain_oauth]`). Unnamed keys keep their defaults.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut v = Variant::default();
        let cleaned = spec.replace("][", ",").replace(['[', ']'], "");
        for part in cleaned.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, val) = part
                .split_once('=')
                .ok_or_else(|| format!("variant part {part:?} is not key=value"))?;
            let bad = || format!("unknown value {val:?} for {k}");
            match k.trim() {
                "client_auth_type" => {
                    v.client_auth_type = match val {
                        "private_key_jwt" | "pkjwt" => ClientAuth::PrivateKeyJwt,
                        "mtls" | "tls_client_auth" => ClientAuth::Mtls,
                        _ => return Err(bad()),
                    }
                }
                "sender_constrain" => {
                    v.sender_constrain = match val {
                        "mtls" => SenderConstrain::Mtls,
                        "dpop" => SenderConstrain::Dpop,
                        _ => return Err(bad()),
                    }
                }
                "openid" => {
                    v.openid = match val {
                        "openid_connect" | "oidc" => OpenId::OpenidConnect,
                        "plain_oauth" | "oauth" => OpenId::PlainOauth,
                        _ => return Err(bad()),
                    }
                }
                "fapi_profile" => {
                    v.fapi_profile = match val {
                        "plain_fapi" => Profile::PlainFapi,
                        "openbanking_uk" => Profile::OpenbankingUk,
                        _ => return Err(bad()),
                    }
                }
                "fapi_request_method" => {
                    v.fapi_request_method = match val {
                        "unsigned" => RequestMethod::Unsigned,
                        "signed_non_repudiation" => RequestMethod::SignedNonRepudiation,
                        _ => return Err(bad()),
                    }
                }
                "fapi_response_mode" => {
                    v.fapi_response_mode = match val {
                        "plain_response" => ResponseMode::PlainResponse,
                        "jarm" => ResponseMode::Jarm,
                        _ => return Err(bad()),
                    }
                }
                // Fixed by the SP plan; accepted so suite strings paste in unchanged.
                "authorization_request_type" if val == "simple" => {}
                other => return Err(format!("unsupported variant parameter {other}={val}")),
            }
        }
        Ok(v)
    }

    pub fn openid(&self) -> bool {
        self.openid == OpenId::OpenidConnect
    }

    pub fn signed(&self) -> bool {
        self.fapi_request_method == RequestMethod::SignedNonRepudiation
    }

    pub fn jarm(&self) -> bool {
        self.fapi_response_mode == ResponseMode::Jarm
    }

    /// The UK Open Banking profile (account-access intents, the accounts resource).
    pub fn uk(&self) -> bool {
        self.fapi_profile == Profile::OpenbankingUk
    }

    pub fn pkjwt(&self) -> bool {
        self.client_auth_type == ClientAuth::PrivateKeyJwt
    }

    /// The kit's `token_endpoint_auth_method` for this variant.
    pub fn auth_method(&self) -> &'static str {
        match self.client_auth_type {
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
            ClientAuth::Mtls => "tls_client_auth",
        }
    }

    pub fn plan_name(&self) -> &'static str {
        match self.fapi_request_method {
            RequestMethod::Unsigned => "fapi2-security-profile-final-test-plan",
            RequestMethod::SignedNonRepudiation => "fapi2-message-signing-final-test-plan",
        }
    }

    fn params(&self) -> Vec<(&'static str, &'static str)> {
        let s = |v: &dyn erased::Name| v.name();
        let mut p = vec![
            ("client_auth_type", s(&self.client_auth_type)),
            ("fapi_profile", s(&self.fapi_profile)),
            ("fapi_request_method", s(&self.fapi_request_method)),
            ("fapi_response_mode", s(&self.fapi_response_mode)),
            ("openid", s(&self.openid)),
            ("sender_constrain", s(&self.sender_constrain)),
        ];
        if self.fapi_request_method == RequestMethod::Unsigned {
            // The SP plan fixes these two; the suite does not accept them as selections.
            p.retain(|(k, _)| *k != "fapi_request_method" && *k != "fapi_response_mode");
        }
        p
    }

    /// The suite's plan selection string, e.g.
    /// `fapi2-security-profile-final-test-plan[client_auth_type=mtls]...`.
    pub fn plan_string(&self) -> String {
        let mut s = self.plan_name().to_owned();
        for (k, v) in self.params() {
            s.push_str(&format!("[{k}={v}]"));
        }
        s
    }

    /// Short label for summaries and file names (Message Signing variants end in
    /// `+signed` and, with JARM, `+jarm`; UK Open Banking ones in `+openbanking_uk`).
    pub fn label(&self) -> String {
        let mut l = format!(
            "{}+{}+{}",
            erased::Name::name(&self.client_auth_type),
            erased::Name::name(&self.sender_constrain),
            erased::Name::name(&self.openid)
        );
        if self.signed() {
            l.push_str("+signed");
        }
        if self.jarm() {
            l.push_str("+jarm");
        }
        if self.uk() {
            l.push_str("+openbanking_uk");
        }
        l
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p: Vec<String> = self
            .params()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        write!(f, "{}", p.join(","))
    }
}

mod erased {
    /// The serde name of a unit variant, for printing.
    pub trait Name {
        fn name(&self) -> &'static str;
    }
    macro_rules! names {
        ($t:ty { $($v:ident => $s:literal),* }) => {
            impl Name for $t {
                fn name(&self) -> &'static str { match self { $(<$t>::$v => $s),* } }
            }
        };
    }
    use super::*;
    names!(ClientAuth { PrivateKeyJwt => "private_key_jwt", Mtls => "mtls" });
    names!(SenderConstrain { Mtls => "mtls", Dpop => "dpop" });
    names!(OpenId { PlainOauth => "plain_oauth", OpenidConnect => "openid_connect" });
    names!(Profile { PlainFapi => "plain_fapi", OpenbankingUk => "openbanking_uk" });
    names!(RequestMethod { Unsigned => "unsigned", SignedNonRepudiation => "signed_non_repudiation" });
    names!(ResponseMode { PlainResponse => "plain_response", Jarm => "jarm" });
}

/// What the deployment advertises, read from its discovery document. Modules that need
/// a capability the AS lacks are reported SKIPPED with the reason, so adding the feature
/// to the AS is enough to bring them in.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Capabilities {
    pub dpop: bool,
    pub signed_requests: bool,
    /// UK Open Banking: the AS takes an account-access intent in the `claims` parameter
    /// (`claims_parameter_supported`, `openbanking_intent_id` in `claims_supported`) and
    /// the kit's resource server answers (set by [`super::capabilities`]).
    pub uk_ob_resources: bool,
}

impl Capabilities {
    pub fn from_discovery(d: &Value) -> Self {
        let non_empty = |k: &str| {
            d.get(k)
                .and_then(|v| v.as_array())
                .is_some_and(|a| !a.is_empty())
        };
        Self {
            dpop: non_empty("dpop_signing_alg_values_supported"),
            signed_requests: non_empty("request_object_signing_alg_values_supported"),
            uk_ob_resources: Self::uk_ob_claims(d),
        }
    }

    /// The discovery half of `uk_ob_resources`: the intent travels in `claims`.
    pub fn uk_ob_claims(d: &Value) -> bool {
        d.get("claims_parameter_supported") == Some(&Value::Bool(true))
            && d.get("claims_supported")
                .and_then(|v| v.as_array())
                .is_some_and(|a| a.iter().any(|c| c == "openbanking_intent_id"))
    }

    /// Why a whole variant cannot run against this AS, if it cannot.
    pub fn variant_gap(&self, v: &Variant) -> Option<&'static str> {
        if v.sender_constrain == SenderConstrain::Dpop && !self.dpop {
            return Some(super::registry::NO_DPOP);
        }
        if v.signed() && !self.signed_requests {
            return Some(super::registry::NO_SIGNED);
        }
        if v.jarm() && !v.signed() {
            return Some(super::registry::NO_JARM_UNSIGNED);
        }
        if v.fapi_profile == Profile::OpenbankingUk && !self.uk_ob_resources {
            return Some(super::registry::NO_UK_OB);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings() {
        let a = Variant::parse("client_auth_type=mtls,openid=plain_oauth").unwrap_or_default();
        let b =
            Variant::parse("[client_auth_type=mtls][openid=plain_oauth][sender_constrain=mtls]")
                .unwrap_or_default();
        assert_eq!(a, b);
        assert_eq!(a.client_auth_type, ClientAuth::Mtls);
        assert!(Variant::parse("client_auth_type=secret").is_err());
        let ms =
            Variant::parse("fapi_request_method=signed_non_repudiation,fapi_response_mode=jarm")
                .unwrap_or_default();
        assert!(ms.signed() && ms.jarm());
        assert_eq!(
            ms.label(),
            "private_key_jwt+mtls+openid_connect+signed+jarm"
        );
        assert!(ms.plan_string().contains("[fapi_response_mode=jarm]"));
        assert!(Variant::matrix().contains(&ms));
        let uk =
            Variant::parse("fapi_profile=openbanking_uk,sender_constrain=dpop").unwrap_or_default();
        assert!(uk.uk() && Variant::matrix().contains(&uk));
        assert_eq!(
            uk.label(),
            "private_key_jwt+dpop+openid_connect+openbanking_uk"
        );
        assert!(uk.plan_string().contains("[fapi_profile=openbanking_uk]"));
        let d = serde_json::json!({"claims_parameter_supported": true, "claims_supported": ["sub", "openbanking_intent_id"]});
        assert!(Capabilities::from_discovery(&d).uk_ob_resources);
        assert!(
            !Capabilities::from_discovery(&serde_json::json!({"claims_parameter_supported": true}))
                .uk_ob_resources
        );
        assert_eq!(
            Variant::default().plan_string(),
            "fapi2-security-profile-final-test-plan[client_auth_type=private_key_jwt][fapi_profile=plain_fapi][openid=openid_connect][sender_constrain=mtls]"
        );
    }
}
