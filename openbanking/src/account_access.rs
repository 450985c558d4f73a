//! Account-access consents: what a TPP may ask for, how it is validated, and the shape
//! stored in the consent store's `details` column (kind [`crate::KIND_ACCOUNT_ACCESS`]).
//!
//! Two ways in, one result ([`AccountAccessRequest`]):
//! * the UK OB intent body of `POST /account-access-consents` ([`parse_intent_body`]);
//! * an RFC 9396 `authorization_details` entry of type `account_information`
//!   ([`parse_authorization_details`]).

use crate::Permission;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A validated request for account access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountAccessRequest {
    pub permissions: BTreeSet<Permission>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expiration: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub transaction_from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub transaction_to: Option<OffsetDateTime>,
}

/// Which way the consent came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `POST /account-access-consents`, then `openbanking_intent_id` at PAR.
    Intent,
    /// `authorization_details` at PAR (RFC 9396).
    Rar,
}

/// `StatusReason` of a consent (OB v4 `OBExternalStatusReason1Code`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReason {
    pub code: String,
    pub description: String,
}

/// The `details` document of an account-access consent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountAccessDetails {
    pub source: Source,
    pub permissions: BTreeSet<Permission>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expiration_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub transaction_from_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub transaction_to_date_time: Option<OffsetDateTime>,
    /// The accounts the customer picked; set when the consent is authorised.
    #[serde(default)]
    pub account_ids: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub status_update_date_time: OffsetDateTime,
    #[serde(default)]
    pub status_reason: Option<StatusReason>,
}

impl AccountAccessDetails {
    pub fn new(source: Source, req: &AccountAccessRequest, now: OffsetDateTime) -> Self {
        Self {
            source,
            permissions: req.permissions.clone(),
            expiration_date_time: req.expiration,
            transaction_from_date_time: req.transaction_from,
            transaction_to_date_time: req.transaction_to,
            account_ids: None,
            status_update_date_time: now,
            status_reason: None,
        }
    }

    pub fn from_value(v: &Value) -> Result<Self, String> {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    }

    pub fn to_value(&self) -> Value {
        // Every field is plain data; serialisation cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn request(&self) -> AccountAccessRequest {
        AccountAccessRequest {
            permissions: self.permissions.clone(),
            expiration: self.expiration_date_time,
            transaction_from: self.transaction_from_date_time,
            transaction_to: self.transaction_to_date_time,
        }
    }

    /// The RFC 9396 entry as granted: what was asked, plus the consent id and the
    /// accounts the customer picked (returned in the token response and the token).
    pub fn granted_authorization_detail(&self, consent_id: &str) -> Value {
        let mut o = serde_json::Map::new();
        o.insert("type".into(), crate::RAR_TYPE_ACCOUNT_INFORMATION.into());
        o.insert("consentId".into(), consent_id.into());
        o.insert(
            "permissions".into(),
            self.permissions.iter().map(|p| p.as_str()).collect(),
        );
        for (k, v) in [
            ("expirationDateTime", self.expiration_date_time),
            ("transactionFromDateTime", self.transaction_from_date_time),
            ("transactionToDateTime", self.transaction_to_date_time),
        ] {
            if let Some(s) = v.and_then(|t| t.format(&Rfc3339).ok()) {
                o.insert(k.into(), s.into());
            }
        }
        if let Some(a) = &self.account_ids {
            o.insert("accounts".into(), a.iter().map(String::as_str).collect());
        }
        Value::Object(o)
    }
}

/// UK OB v4 consent status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObStatus {
    Awau,
    Auth,
    Rjct,
    Canc,
    Expd,
}

impl ObStatus {
    pub fn code(self) -> &'static str {
        match self {
            ObStatus::Awau => "AWAU",
            ObStatus::Auth => "AUTH",
            ObStatus::Rjct => "RJCT",
            ObStatus::Canc => "CANC",
            ObStatus::Expd => "EXPD",
        }
    }
}

/// What is wrong with a request, in terms both error schemas can express: the OB error
/// (`UK.OBIE.*` code and JSON path) and the OAuth one (`invalid_authorization_details`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConsentError {
    pub kind: ErrorKind,
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `UK.OBIE.Field.Missing`
    Missing,
    /// `UK.OBIE.Field.Invalid`
    Invalid,
    /// `UK.OBIE.Field.InvalidDate`
    InvalidDate,
    /// `UK.OBIE.Field.Unexpected`
    Unexpected,
    /// An `authorization_details` type this platform does not know.
    UnknownType,
}

impl ErrorKind {
    pub fn ob_code(self) -> &'static str {
        match self {
            ErrorKind::Missing => "UK.OBIE.Field.Missing",
            ErrorKind::Invalid | ErrorKind::UnknownType => "UK.OBIE.Field.Invalid",
            ErrorKind::InvalidDate => "UK.OBIE.Field.InvalidDate",
            ErrorKind::Unexpected => "UK.OBIE.Field.Unexpected",
        }
    }
}

fn err(kind: ErrorKind, path: &str, message: impl Into<String>) -> ConsentError {
    ConsentError {
        kind,
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Field names of one way in (PascalCase OB body, camelCase RAR).
struct Names {
    permissions: &'static str,
    expiration: &'static str,
    from: &'static str,
    to: &'static str,
}

const OB_NAMES: Names = Names {
    permissions: "Permissions",
    expiration: "ExpirationDateTime",
    from: "TransactionFromDateTime",
    to: "TransactionToDateTime",
};

const RAR_NAMES: Names = Names {
    permissions: "permissions",
    expiration: "expirationDateTime",
    from: "transactionFromDateTime",
    to: "transactionToDateTime",
};

/// `POST /account-access-consents` body: `{"Data": {...}, "Risk": {}}`.
pub fn parse_intent_body(
    body: &Value,
    now: OffsetDateTime,
) -> Result<AccountAccessRequest, ConsentError> {
    let root = body
        .as_object()
        .ok_or_else(|| err(ErrorKind::Invalid, "", "the body must be a JSON object"))?;
    for k in root.keys() {
        if k != "Data" && k != "Risk" {
            return Err(err(ErrorKind::Unexpected, k, "unexpected field"));
        }
    }
    match root.get("Risk") {
        None => return Err(err(ErrorKind::Missing, "Risk", "Risk is required")),
        Some(Value::Object(_)) => {}
        Some(_) => return Err(err(ErrorKind::Invalid, "Risk", "Risk must be an object")),
    }
    let data = root
        .get("Data")
        .ok_or_else(|| err(ErrorKind::Missing, "Data", "Data is required"))?
        .as_object()
        .ok_or_else(|| err(ErrorKind::Invalid, "Data", "Data must be an object"))?;
    for k in data.keys() {
        if ![
            OB_NAMES.permissions,
            OB_NAMES.expiration,
            OB_NAMES.from,
            OB_NAMES.to,
        ]
        .contains(&k.as_str())
        {
            return Err(err(
                ErrorKind::Unexpected,
                &format!("Data.{k}"),
                "unexpected field",
            ));
        }
    }
    parse_fields(data, &OB_NAMES, "Data.", now)
}

/// The `account_information` entries of an `authorization_details` parameter (a JSON
/// array). Exactly one entry is accepted; unknown types are refused.
pub fn parse_authorization_details(
    raw: &str,
    now: OffsetDateTime,
) -> Result<AccountAccessRequest, ConsentError> {
    let v: Value = serde_json::from_str(raw).map_err(|_| {
        err(
            ErrorKind::Invalid,
            "authorization_details",
            "not valid JSON",
        )
    })?;
    let items = v.as_array().ok_or_else(|| {
        err(
            ErrorKind::Invalid,
            "authorization_details",
            "must be a JSON array",
        )
    })?;
    if items.is_empty() {
        return Err(err(
            ErrorKind::Invalid,
            "authorization_details",
            "must not be empty",
        ));
    }
    let mut found = None;
    for (i, item) in items.iter().enumerate() {
        let path = format!("authorization_details[{i}]");
        let o = item
            .as_object()
            .ok_or_else(|| err(ErrorKind::Invalid, &path, "each entry must be an object"))?;
        let ty = o.get("type").and_then(Value::as_str).ok_or_else(|| {
            err(
                ErrorKind::Missing,
                &format!("{path}.type"),
                "type is required",
            )
        })?;
        // `payment_initiation` requests are read by
        // `payment::payment_initiation_from_details` before this parser is asked.
        if ty != crate::RAR_TYPE_ACCOUNT_INFORMATION {
            return Err(err(
                ErrorKind::UnknownType,
                &format!("{path}.type"),
                format!("unsupported authorization_details type {}", clip(ty)),
            ));
        }
        if found.is_some() {
            return Err(err(
                ErrorKind::Invalid,
                &path,
                "only one account_information entry is allowed",
            ));
        }
        for k in o.keys() {
            let known = [
                "type",
                RAR_NAMES.permissions,
                RAR_NAMES.expiration,
                RAR_NAMES.from,
                RAR_NAMES.to,
                // RFC 9396 §2.2 common fields, accepted and ignored when empty.
                "locations",
                "actions",
                "datatypes",
                "identifier",
                "privileges",
            ];
            if !known.contains(&k.as_str()) {
                return Err(err(
                    ErrorKind::Unexpected,
                    &format!("{path}.{k}"),
                    "unexpected field",
                ));
            }
        }
        found = Some(parse_fields(o, &RAR_NAMES, &format!("{path}."), now)?);
    }
    found.ok_or_else(|| err(ErrorKind::Invalid, "authorization_details", "no entries"))
}

fn parse_fields(
    o: &serde_json::Map<String, Value>,
    n: &Names,
    prefix: &str,
    now: OffsetDateTime,
) -> Result<AccountAccessRequest, ConsentError> {
    let p = |k: &str| format!("{prefix}{k}");
    let list = o
        .get(n.permissions)
        .ok_or_else(|| {
            err(
                ErrorKind::Missing,
                &p(n.permissions),
                "permissions are required",
            )
        })?
        .as_array()
        .ok_or_else(|| err(ErrorKind::Invalid, &p(n.permissions), "must be an array"))?;
    if list.is_empty() {
        return Err(err(
            ErrorKind::Invalid,
            &p(n.permissions),
            "at least one permission is required",
        ));
    }
    let mut permissions = BTreeSet::new();
    for v in list {
        let s = v
            .as_str()
            .ok_or_else(|| err(ErrorKind::Invalid, &p(n.permissions), "must be strings"))?;
        let perm: Permission = s.parse().map_err(|()| {
            err(
                ErrorKind::Invalid,
                &p(n.permissions),
                format!("unsupported permission {}", clip(s)),
            )
        })?;
        if !permissions.insert(perm) {
            return Err(err(
                ErrorKind::Invalid,
                &p(n.permissions),
                format!("permission {s} is repeated"),
            ));
        }
    }
    // OB rule: transaction permissions come as a pair, one saying how much is seen
    // (Basic/Detail), one saying which direction (Credits/Debits).
    let level = permissions.contains(&Permission::ReadTransactionsBasic)
        || permissions.contains(&Permission::ReadTransactionsDetail);
    let direction = permissions.contains(&Permission::ReadTransactionsCredits)
        || permissions.contains(&Permission::ReadTransactionsDebits);
    if level != direction {
        return Err(err(
            ErrorKind::Invalid,
            &p(n.permissions),
            "ReadTransactionsBasic or ReadTransactionsDetail must come with ReadTransactionsCredits or ReadTransactionsDebits, and the other way round",
        ));
    }
    let date = |k: &str| -> Result<Option<OffsetDateTime>, ConsentError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339).map(Some).map_err(|_| {
                err(
                    ErrorKind::InvalidDate,
                    &p(k),
                    "must be an ISO 8601 date-time with a time zone",
                )
            }),
            Some(_) => Err(err(ErrorKind::InvalidDate, &p(k), "must be a string")),
        }
    };
    let expiration = date(n.expiration)?;
    let transaction_from = date(n.from)?;
    let transaction_to = date(n.to)?;
    if expiration.is_some_and(|e| e <= now) {
        return Err(err(
            ErrorKind::InvalidDate,
            &p(n.expiration),
            "must be in the future",
        ));
    }
    if let (Some(f), Some(t)) = (transaction_from, transaction_to)
        && f > t
    {
        return Err(err(
            ErrorKind::InvalidDate,
            &p(n.from),
            "must not be after the transaction end date",
        ));
    }
    Ok(AccountAccessRequest {
        permissions,
        expiration,
        transaction_from,
        transaction_to,
    })
}

/// The intent id a TPP names in the OIDC `claims` parameter (UK OB: the
/// `openbanking_intent_id` claim requested for the ID token and/or userinfo). When both
/// name one, they must agree.
pub fn intent_id_from_claims(claims: &str) -> Result<Option<String>, &'static str> {
    let v: Value = serde_json::from_str(claims).map_err(|_| "claims is not valid JSON")?;
    if !v.is_object() {
        return Err("claims must be a JSON object");
    }
    let mut found: Option<String> = None;
    for member in ["id_token", "userinfo"] {
        let Some(c) = v.get(member).and_then(|m| m.get("openbanking_intent_id")) else {
            continue;
        };
        let id = c
            .get("value")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("openbanking_intent_id needs a string value")?;
        match &found {
            Some(f) if f != id => return Err("openbanking_intent_id values disagree"),
            _ => found = Some(id.to_owned()),
        }
    }
    Ok(found)
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-24 12:00 UTC);

    fn body(data: Value) -> Value {
        json!({"Data": data, "Risk": {}})
    }

    #[test]
    fn intent_body_round_trip() {
        let r = parse_intent_body(
            &body(json!({
                "Permissions": ["ReadAccountsBasic", "ReadTransactionsDetail", "ReadTransactionsCredits"],
                "ExpirationDateTime": "2027-01-01T00:00:00+00:00",
                "TransactionFromDateTime": "2026-01-01T00:00:00Z",
                "TransactionToDateTime": "2026-12-31T23:59:59Z"
            })),
            NOW,
        )
        .unwrap();
        assert_eq!(r.permissions.len(), 3);
        assert_eq!(r.expiration, Some(datetime!(2027-01-01 0:00 UTC)));
        let d = AccountAccessDetails::new(Source::Intent, &r, NOW);
        let back = AccountAccessDetails::from_value(&d.to_value()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.request(), r);
    }

    #[test]
    fn intent_body_rules() {
        let bad = |data: Value| parse_intent_body(&body(data), NOW).unwrap_err();
        assert_eq!(bad(json!({})).kind, ErrorKind::Missing);
        assert_eq!(bad(json!({"Permissions": []})).kind, ErrorKind::Invalid);
        assert_eq!(
            bad(json!({"Permissions": ["ReadPAN"]})).kind,
            ErrorKind::Invalid
        );
        assert_eq!(
            bad(json!({"Permissions": ["ReadBalances", "ReadBalances"]})).kind,
            ErrorKind::Invalid
        );
        // Transaction permissions come in pairs.
        assert_eq!(
            bad(json!({"Permissions": ["ReadTransactionsBasic"]})).kind,
            ErrorKind::Invalid
        );
        assert_eq!(
            bad(json!({"Permissions": ["ReadTransactionsDebits"]})).kind,
            ErrorKind::Invalid
        );
        let e = bad(
            json!({"Permissions": ["ReadBalances"], "ExpirationDateTime": "2026-11-01T00:00:00Z"}),
        );
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidDate, "Data.ExpirationDateTime")
        );
        assert_eq!(
            bad(json!({"Permissions": ["ReadBalances"], "ExpirationDateTime": "2027-01-01T00:00:00"})).kind,
            ErrorKind::InvalidDate
        );
        assert_eq!(
            bad(json!({"Permissions": ["ReadBalances"], "TransactionFromDateTime": "2026-02-01T00:00:00Z", "TransactionToDateTime": "2026-01-01T00:00:00Z"})).kind,
            ErrorKind::InvalidDate
        );
        assert_eq!(
            bad(json!({"Permissions": ["ReadBalances"], "Extra": 1})).kind,
            ErrorKind::Unexpected
        );
        assert_eq!(
            parse_intent_body(&json!({"Data": {"Permissions": ["ReadBalances"]}}), NOW)
                .unwrap_err()
                .kind,
            ErrorKind::Missing
        );
    }

    #[test]
    fn authorization_details_rules() {
        let ok = parse_authorization_details(
            r#"[{"type":"account_information","permissions":["ReadBalances"],"expirationDateTime":"2027-01-01T00:00:00Z"}]"#,
            NOW,
        )
        .unwrap();
        assert!(ok.permissions.contains(&Permission::ReadBalances));
        let e = parse_authorization_details(r#"[{"type":"payment_initiation"}]"#, NOW).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownType);
        for raw in [
            "{}",
            "[]",
            "not json",
            r#"[{"permissions":["ReadBalances"]}]"#,
            r#"[{"type":"account_information","permissions":["ReadBalances"]},{"type":"account_information","permissions":["ReadBalances"]}]"#,
            r#"[{"type":"account_information","permissions":["ReadBalances"],"bogus":1}]"#,
        ] {
            assert!(parse_authorization_details(raw, NOW).is_err(), "{raw}");
        }
    }

    #[test]
    fn granted_detail_names_accounts_and_consent() {
        let r = parse_intent_body(&body(json!({"Permissions": ["ReadBalances"]})), NOW).unwrap();
        let mut d = AccountAccessDetails::new(Source::Rar, &r, NOW);
        d.account_ids = Some(vec!["a1".into()]);
        let g = d.granted_authorization_detail("c1");
        assert_eq!(g["type"], "account_information");
        assert_eq!(g["consentId"], "c1");
        assert_eq!(g["accounts"], json!(["a1"]));
        assert_eq!(g["permissions"], json!(["ReadBalances"]));
    }

    #[test]
    fn intent_id_from_claims_parameter() {
        let c = r#"{"id_token":{"openbanking_intent_id":{"value":"abc","essential":true}}}"#;
        assert_eq!(intent_id_from_claims(c), Ok(Some("abc".into())));
        assert_eq!(
            intent_id_from_claims(r#"{"id_token":{"acr":{}}}"#),
            Ok(None)
        );
        assert!(
            intent_id_from_claims(
                r#"{"id_token":{"openbanking_intent_id":{"value":"a"}},"userinfo":{"openbanking_intent_id":{"value":"b"}}}"#
            )
            .is_err()
        );
        assert!(intent_id_from_claims(r#"{"id_token":{"openbanking_intent_id":{}}}"#).is_err());
        assert!(intent_id_from_claims("[]").is_err());
    }
}
