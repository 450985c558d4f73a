//! Domestic payments (UK OB Read/Write v4 `domestic-payment-consents` and
//! `domestic-payments`): what a TPP may send, how it is validated, the consent's stored
//! shape (kind [`crate::KIND_DOMESTIC_PAYMENT`]) and the rule that a payment's
//! `Initiation` and `Risk` equal its consent's.
//!
//! Money is never a float: `InstructedAmount.Amount` is parsed as an exact decimal string
//! into integer minor units, with the currency's ISO 4217 exponent as the upper bound on
//! decimal places ([`parse_amount`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// OB error codes a payment request can earn.
pub mod codes {
    pub const FIELD_MISSING: &str = "UK.OBIE.Field.Missing";
    pub const FIELD_INVALID: &str = "UK.OBIE.Field.Invalid";
    pub const FIELD_UNEXPECTED: &str = "UK.OBIE.Field.Unexpected";
    pub const UNSUPPORTED_CURRENCY: &str = "UK.OBIE.Unsupported.Currency";
    pub const UNSUPPORTED_SCHEME: &str = "UK.OBIE.Unsupported.AccountScheme";
    pub const CONSENT_MISMATCH: &str = "UK.OBIE.Resource.ConsentMismatch";
}

/// Why a payment body is refused: the `UK.OBIE.*` code, the JSON path and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PaymentError {
    pub code: &'static str,
    pub path: String,
    pub message: String,
}

pub(crate) fn perr(code: &'static str, path: &str, message: impl Into<String>) -> PaymentError {
    PaymentError {
        code,
        path: path.to_owned(),
        message: message.into(),
    }
}

// ---- money -----------------------------------------------------------------------------

/// ISO 4217 minor-unit exponents of the currencies accepted in a payment. A code missing
/// here is refused (`UK.OBIE.Unsupported.Currency`), never guessed.
const CURRENCIES: &[(&str, u32)] = &[
    ("KES", 2),
    ("GBP", 2),
    ("EUR", 2),
    ("USD", 2),
    ("UGX", 0),
    ("JPY", 0),
    ("KWD", 3),
    ("BHD", 3),
];

/// The ISO 4217 exponent of `code`, if the platform knows the currency.
pub fn currency_scale(code: &str) -> Option<u32> {
    CURRENCIES.iter().find(|(c, _)| *c == code).map(|(_, s)| *s)
}

/// `Amount` (OB `OBActiveCurrencyAndAmount_SimpleType`: `^\d{1,13}$|^\d{1,13}\.\d{1,5}$`)
/// in `currency` → minor units. More decimal places than the currency has, zero, or
/// anything but plain digits is refused.
pub fn parse_amount(amount: &str, currency: &str) -> Result<i64, String> {
    let scale = currency_scale(currency).ok_or("unsupported currency")?;
    let (int, frac) = match amount.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (amount, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || int.len() > 13 {
        return Err("Amount must be 1 to 13 digits, optionally followed by decimals".into());
    }
    let frac = frac.unwrap_or("");
    if amount.contains('.') && (!digits(frac) || frac.len() > 5) {
        return Err("Amount must have 1 to 5 decimal digits after the point".into());
    }
    if frac.len() as u32 > scale {
        return Err(format!(
            "{currency} has {scale} decimal places; Amount has {}",
            frac.len()
        ));
    }
    let mut minor: i64 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        minor = minor
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(b - b'0')))
            .ok_or("Amount is too large")?;
    }
    for _ in frac.len() as u32..scale {
        minor = minor.checked_mul(10).ok_or("Amount is too large")?;
    }
    if minor == 0 {
        return Err("Amount must be greater than zero".into());
    }
    Ok(minor)
}

/// Minor units of `currency` as a decimal string with exactly the currency's places
/// (`1050`, `KES` → `"10.50"`).
pub fn format_minor(minor: i64, currency: &str) -> String {
    let scale = currency_scale(currency).unwrap_or(2);
    let neg = minor < 0;
    let abs = minor.unsigned_abs();
    let p = 10u64.pow(scale);
    let s = if scale == 0 {
        abs.to_string()
    } else {
        format!("{}.{:0w$}", abs / p, abs % p, w = scale as usize)
    };
    if neg { format!("-{s}") } else { s }
}

// ---- shapes ----------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstructedAmount {
    /// As the TPP sent it (compared by value, rendered back unchanged).
    pub amount: String,
    pub currency: String,
}

/// `OBCashAccountDebtor4` / `OBCashAccountCreditor3`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountRef {
    pub scheme_name: String,
    pub identification: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_identification: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Remittance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unstructured: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// `OBDomesticInitiation`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Initiation {
    pub instruction_identification: String,
    pub end_to_end_identification: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_instrument: Option<String>,
    pub instructed_amount: InstructedAmount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debtor_account: Option<AccountRef>,
    pub creditor_account: AccountRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remittance_information: Option<Remittance>,
}

impl Initiation {
    /// The instructed amount in minor units (validated at parse time).
    pub fn amount_minor(&self) -> Result<i64, String> {
        parse_amount(
            &self.instructed_amount.amount,
            &self.instructed_amount.currency,
        )
    }

    pub fn reference(&self) -> Option<&str> {
        self.remittance_information
            .as_ref()
            .and_then(|r| r.reference.as_deref())
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A validated `POST /domestic-payment-consents` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRequest {
    pub initiation: Initiation,
    pub risk: Value,
    pub read_refund_account: Option<String>,
}

/// A validated `POST /domestic-payments` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub consent_id: String,
    pub initiation: Initiation,
    pub risk: Value,
}

/// The `details` document of a domestic-payment consent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentConsentDetails {
    pub initiation: Initiation,
    pub risk: Value,
    #[serde(default)]
    pub read_refund_account: Option<String>,
    /// The customer's account the money leaves: named in the consent, or picked by the
    /// customer when authorising. Set once authorised.
    #[serde(default)]
    pub debtor_account_id: Option<String>,
    /// The payment that consumed the consent.
    #[serde(default)]
    pub payment_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub status_update_date_time: OffsetDateTime,
    #[serde(default)]
    pub status_reason: Option<crate::StatusReason>,
    /// How the consent came in. Written only for RAR (`payment_initiation` at PAR), so
    /// intent-path documents are unchanged; it decides what the token carries.
    #[serde(default = "intent_source", skip_serializing_if = "is_intent_source")]
    pub source: crate::Source,
}

fn intent_source() -> crate::Source {
    crate::Source::Intent
}

fn is_intent_source(s: &crate::Source) -> bool {
    *s == crate::Source::Intent
}

impl PaymentConsentDetails {
    pub fn new(req: &ConsentRequest, now: OffsetDateTime) -> Self {
        Self {
            initiation: req.initiation.clone(),
            risk: req.risk.clone(),
            read_refund_account: req.read_refund_account.clone(),
            debtor_account_id: None,
            payment_id: None,
            status_update_date_time: now,
            status_reason: None,
            source: crate::Source::Intent,
        }
    }

    /// The RFC 9396 entry as granted (token response and access token): the
    /// `Initiation` and `Risk` in the RAR spelling, the consent id, and the account the
    /// customer picked to pay from (its id, as the account-information API names it).
    pub fn granted_authorization_detail(&self, consent_id: &str) -> Value {
        fn camel(v: &Value) -> Value {
            match v {
                Value::Object(m) => Value::Object(
                    m.iter()
                        .map(|(k, v)| {
                            let mut c = k.chars();
                            let k = match c.next() {
                                Some(f) => f.to_lowercase().chain(c).collect(),
                                None => String::new(),
                            };
                            (k, camel(v))
                        })
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        let mut o = match camel(&self.initiation.to_value()) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        o.insert("type".into(), RAR_TYPE_PAYMENT_INITIATION.into());
        // Risk is the TPP's own document: returned as it was sent.
        o.insert("risk".into(), self.risk.clone());
        o.insert("consentId".into(), consent_id.into());
        if let Some(a) = &self.debtor_account_id {
            o.insert("debtorAccountId".into(), a.as_str().into());
        }
        Value::Object(o)
    }

    pub fn from_value(v: &Value) -> Result<Self, String> {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

// ---- parsing ---------------------------------------------------------------------------

pub(crate) fn object<'a>(
    v: Option<&'a Value>,
    path: &str,
) -> Result<&'a Map<String, Value>, PaymentError> {
    match v {
        None | Some(Value::Null) => Err(perr(codes::FIELD_MISSING, path, "required")),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(perr(codes::FIELD_INVALID, path, "must be an object")),
    }
}

pub(crate) fn only(
    o: &Map<String, Value>,
    allowed: &[&str],
    prefix: &str,
) -> Result<(), PaymentError> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(perr(
            codes::FIELD_UNEXPECTED,
            &format!("{prefix}{k}"),
            "unexpected field",
        )),
        None => Ok(()),
    }
}

/// A text field of 1..=`max` characters; `None` when absent and not `required`.
pub(crate) fn text(
    o: &Map<String, Value>,
    key: &str,
    prefix: &str,
    max: usize,
    required: bool,
) -> Result<Option<String>, PaymentError> {
    let path = format!("{prefix}{key}");
    match o.get(key) {
        None | Some(Value::Null) if required => Err(perr(codes::FIELD_MISSING, &path, "required")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n == 0 || n > max {
                Err(perr(
                    codes::FIELD_INVALID,
                    &path,
                    format!("must be 1 to {max} characters"),
                ))
            } else if s.chars().any(char::is_control) {
                Err(perr(
                    codes::FIELD_INVALID,
                    &path,
                    "control characters are not allowed",
                ))
            } else {
                Ok(Some(s.clone()))
            }
        }
        Some(_) => Err(perr(codes::FIELD_INVALID, &path, "must be a string")),
    }
}

pub(crate) fn req_text(
    o: &Map<String, Value>,
    key: &str,
    prefix: &str,
    max: usize,
) -> Result<String, PaymentError> {
    text(o, key, prefix, max, true)?
        .ok_or_else(|| perr(codes::FIELD_MISSING, &format!("{prefix}{key}"), "required"))
}

/// Account identification schemes a payment may name (UK OB and the sandbox's own).
pub const ACCOUNT_SCHEMES: &[&str] = &[
    "UK.OBIE.SortCodeAccountNumber",
    "UK.OBIE.IBAN",
    "KE.WEKEZA.AccountNumber",
    "KE.MPESA.MSISDN",
];

pub(crate) fn account(
    v: Option<&Value>,
    path: &str,
    name_required: bool,
) -> Result<AccountRef, PaymentError> {
    let o = object(v, path)?;
    let p = format!("{path}.");
    only(
        o,
        &[
            "SchemeName",
            "Identification",
            "Name",
            "SecondaryIdentification",
        ],
        &p,
    )?;
    let scheme_name = req_text(o, "SchemeName", &p, 40)?;
    if !ACCOUNT_SCHEMES.contains(&scheme_name.as_str()) {
        return Err(perr(
            codes::UNSUPPORTED_SCHEME,
            &format!("{p}SchemeName"),
            format!("supported schemes: {}", ACCOUNT_SCHEMES.join(", ")),
        ));
    }
    Ok(AccountRef {
        scheme_name,
        identification: req_text(o, "Identification", &p, 256)?,
        name: text(o, "Name", &p, 350, name_required)?,
        secondary_identification: text(o, "SecondaryIdentification", &p, 34, false)?,
    })
}

pub(crate) fn initiation(v: Option<&Value>, path: &str) -> Result<Initiation, PaymentError> {
    let o = object(v, path)?;
    let p = format!("{path}.");
    only(
        o,
        &[
            "InstructionIdentification",
            "EndToEndIdentification",
            "LocalInstrument",
            "InstructedAmount",
            "DebtorAccount",
            "CreditorAccount",
            "RemittanceInformation",
        ],
        &p,
    )?;
    let ap = format!("{p}InstructedAmount");
    let a = object(o.get("InstructedAmount"), &ap)?;
    let ap = format!("{ap}.");
    only(a, &["Amount", "Currency"], &ap)?;
    let amount = req_text(a, "Amount", &ap, 19)?;
    let currency = req_text(a, "Currency", &ap, 3)?;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(perr(
            codes::FIELD_INVALID,
            &format!("{ap}Currency"),
            "must be an ISO 4217 code",
        ));
    }
    if currency_scale(&currency).is_none() {
        return Err(perr(
            codes::UNSUPPORTED_CURRENCY,
            &format!("{ap}Currency"),
            format!("{currency} is not supported"),
        ));
    }
    parse_amount(&amount, &currency)
        .map_err(|m| perr(codes::FIELD_INVALID, &format!("{ap}Amount"), m))?;
    let remittance = match o.get("RemittanceInformation") {
        None | Some(Value::Null) => None,
        v => {
            let rp = format!("{p}RemittanceInformation");
            let r = object(v, &rp)?;
            let rp = format!("{rp}.");
            only(r, &["Unstructured", "Reference"], &rp)?;
            Some(Remittance {
                unstructured: text(r, "Unstructured", &rp, 140, false)?,
                reference: text(r, "Reference", &rp, 35, false)?,
            })
        }
    };
    Ok(Initiation {
        instruction_identification: req_text(o, "InstructionIdentification", &p, 35)?,
        end_to_end_identification: req_text(o, "EndToEndIdentification", &p, 35)?,
        local_instrument: text(o, "LocalInstrument", &p, 50, false)?,
        instructed_amount: InstructedAmount { amount, currency },
        debtor_account: match o.get("DebtorAccount") {
            None | Some(Value::Null) => None,
            v => Some(account(v, &format!("{p}DebtorAccount"), false)?),
        },
        creditor_account: account(
            o.get("CreditorAccount"),
            &format!("{p}CreditorAccount"),
            true,
        )?,
        remittance_information: remittance,
    })
}

fn risk(root: &Map<String, Value>) -> Result<Value, PaymentError> {
    object(root.get("Risk"), "Risk").map(|o| Value::Object(o.clone()))
}

fn root(body: &Value) -> Result<&Map<String, Value>, PaymentError> {
    let root = body
        .as_object()
        .ok_or_else(|| perr(codes::FIELD_INVALID, "", "the body must be a JSON object"))?;
    only(root, &["Data", "Risk"], "")?;
    Ok(root)
}

/// `POST /domestic-payment-consents`: `{"Data": {"Initiation": {...}}, "Risk": {...}}`.
pub fn parse_consent_body(body: &Value) -> Result<ConsentRequest, PaymentError> {
    let root = root(body)?;
    let data = object(root.get("Data"), "Data")?;
    only(data, &["Initiation", "ReadRefundAccount"], "Data.")?;
    let read_refund_account = text(data, "ReadRefundAccount", "Data.", 3, false)?;
    if read_refund_account
        .as_deref()
        .is_some_and(|v| v != "Yes" && v != "No")
    {
        return Err(perr(
            codes::FIELD_INVALID,
            "Data.ReadRefundAccount",
            "must be Yes or No",
        ));
    }
    Ok(ConsentRequest {
        initiation: initiation(data.get("Initiation"), "Data.Initiation")?,
        risk: risk(root)?,
        read_refund_account,
    })
}

/// `POST /domestic-payments`: `{"Data": {"ConsentId": "...", "Initiation": {...}}, "Risk": {...}}`.
pub fn parse_payment_body(body: &Value) -> Result<PaymentRequest, PaymentError> {
    let root = root(body)?;
    let data = object(root.get("Data"), "Data")?;
    only(data, &["ConsentId", "Initiation"], "Data.")?;
    Ok(PaymentRequest {
        consent_id: req_text(data, "ConsentId", "Data.", 128)?,
        initiation: initiation(data.get("Initiation"), "Data.Initiation")?,
        risk: risk(root)?,
    })
}

/// UK OB: the payment's `Initiation` and `Risk` must equal the consent's. Amounts are
/// compared by value (`10.5` equals `10.50` in a two-place currency); every other field
/// exactly. The error names the first differing part.
pub fn check_matches_consent(
    payment: &PaymentRequest,
    consent: &PaymentConsentDetails,
) -> Result<(), PaymentError> {
    let mismatch = |path: &str| {
        perr(
            codes::CONSENT_MISMATCH,
            path,
            "does not match the authorised consent",
        )
    };
    let (a, b) = (&payment.initiation, &consent.initiation);
    if a.instructed_amount.currency != b.instructed_amount.currency
        || a.amount_minor().ok() != b.amount_minor().ok()
    {
        return Err(mismatch("Data.Initiation.InstructedAmount"));
    }
    let mut a2 = a.clone();
    a2.instructed_amount.amount = b.instructed_amount.amount.clone();
    if a2.creditor_account != b.creditor_account {
        return Err(mismatch("Data.Initiation.CreditorAccount"));
    }
    if a2.debtor_account != b.debtor_account {
        return Err(mismatch("Data.Initiation.DebtorAccount"));
    }
    if a2 != *b {
        return Err(mismatch("Data.Initiation"));
    }
    if payment.risk != consent.risk {
        return Err(mismatch("Risk"));
    }
    Ok(())
}

// ---- payment status and the sandbox clearing ---------------------------------------------

/// ISO 20022 payment status codes the platform uses (OB v4 `OBTransactionIndividualStatus1Code`
/// subset).
pub mod status {
    /// Received, not yet settled (a payment to another bank, before clearing).
    pub const RCVD: &str = "RCVD";
    /// AcceptedSettlementInProcess: debited here, on its way through clearing.
    pub const ACSP: &str = "ACSP";
    /// AcceptedSettlementCompleted: the creditor's bank has it (or it was internal).
    pub const ACSC: &str = "ACSC";
    /// Rejected (with a reason).
    pub const RJCT: &str = "RJCT";
}

/// ISO 20022 `ExternalStatusReason1Code` values the platform gives.
pub mod reason {
    /// Insufficient funds.
    pub const AM04: &str = "AM04";
    /// Currency not allowed (the creditor account holds another currency).
    pub const AM03: &str = "AM03";
    /// Account closed / unknown at the creditor's bank (sandbox clearing rejection).
    pub const AC04: &str = "AC04";
}

/// What the sandbox clearing does with a payment to another bank, by amount (so a TPP
/// can test every path): minor units ending in `13` are rejected by the creditor's bank
/// (`AC04`, money returned); ending in `77` settle late; everything else settles at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearingOutcome {
    Settle { after_secs: i64 },
    Reject { after_secs: i64 },
}

/// Seconds a normal external payment spends in ACSP before the clearing answers.
pub const CLEARING_SECS: i64 = 1;
/// Seconds a delayed (`…77`) payment spends in ACSP.
pub const CLEARING_DELAYED_SECS: i64 = 30;

pub fn sandbox_clearing(amount_minor: i64) -> ClearingOutcome {
    match amount_minor.rem_euclid(100) {
        13 => ClearingOutcome::Reject {
            after_secs: CLEARING_SECS,
        },
        77 => ClearingOutcome::Settle {
            after_secs: CLEARING_DELAYED_SECS,
        },
        _ => ClearingOutcome::Settle {
            after_secs: CLEARING_SECS,
        },
    }
}

// ---- RFC 9396 `payment_initiation` (ADR 0017) -------------------------------------------

/// The RFC 9396 `type` that carries a domestic payment consent.
pub const RAR_TYPE_PAYMENT_INITIATION: &str = "payment_initiation";

/// `instructionIdentification` / `endToEndIdentification` when the TPP sends none
/// (the ISO 20022 convention for an end-to-end id the initiator did not give).
pub const NOT_PROVIDED: &str = "NOTPROVIDED";

/// One `payment_initiation` entry of `authorization_details`, in camelCase:
///
/// ```json
/// {"type": "payment_initiation",
///  "instructedAmount": {"amount": "12.50", "currency": "KES"},
///  "creditorAccount": {"schemeName": "KE.WEKEZA.AccountNumber", "identification": "…"},
///  "creditorName": "Bob's Shop",
///  "remittanceInformation": {"reference": "INV-1", "unstructured": "…"},
///  "debtorAccount": {"schemeName": "…", "identification": "…"},
///  "instructionIdentification": "…", "endToEndIdentification": "…",
///  "localInstrument": "…", "risk": {…}}
/// ```
///
/// mapped onto the OB consent body and validated by [`parse_consent_body`], so both ways
/// in obey one set of rules and store one shape. `creditorName` may instead be
/// `creditorAccount.name`; the RFC 9396 common fields (`locations`, `actions`,
/// `datatypes`, `identifier`, `privileges`) are refused, as is anything else unknown.
pub fn parse_payment_initiation_details(entry: &Value) -> Result<ConsentRequest, PaymentError> {
    let o = entry
        .as_object()
        .ok_or_else(|| perr(codes::FIELD_INVALID, "", "the entry must be a JSON object"))?;
    const FIELDS: &[&str] = &[
        "type",
        "instructedAmount",
        "creditorAccount",
        "creditorName",
        "remittanceInformation",
        "debtorAccount",
        "instructionIdentification",
        "endToEndIdentification",
        "localInstrument",
        "risk",
    ];
    if let Some(k) = o.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(perr(codes::FIELD_UNEXPECTED, k, "unknown field"));
    }
    if o.get("type").and_then(Value::as_str) != Some(RAR_TYPE_PAYMENT_INITIATION) {
        return Err(perr(
            codes::FIELD_INVALID,
            "type",
            "must be payment_initiation",
        ));
    }
    // camelCase members → the OB PascalCase ones; anything unknown inside stays unknown
    // (and is refused by the OB rules, under its OB name).
    fn pascal(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let mut c = k.chars();
                        let k = match c.next() {
                            Some(f) => f.to_uppercase().chain(c).collect(),
                            None => String::new(),
                        };
                        (k, pascal(v))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let mut init = Map::new();
    for (rar, ob) in [
        ("instructedAmount", "InstructedAmount"),
        ("creditorAccount", "CreditorAccount"),
        ("remittanceInformation", "RemittanceInformation"),
        ("debtorAccount", "DebtorAccount"),
        ("instructionIdentification", "InstructionIdentification"),
        ("endToEndIdentification", "EndToEndIdentification"),
        ("localInstrument", "LocalInstrument"),
    ] {
        if let Some(v) = o.get(rar) {
            init.insert(ob.into(), pascal(v));
        }
    }
    for id in ["InstructionIdentification", "EndToEndIdentification"] {
        init.entry(id).or_insert_with(|| NOT_PROVIDED.into());
    }
    if let Some(name) = o.get("creditorName") {
        let acct = init
            .get_mut("CreditorAccount")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| perr(codes::FIELD_MISSING, "creditorAccount", "required"))?;
        if acct.contains_key("Name") {
            return Err(perr(
                codes::FIELD_INVALID,
                "creditorName",
                "give creditorName or creditorAccount.name, not both",
            ));
        }
        acct.insert("Name".into(), name.clone());
    }
    let body = serde_json::json!({
        "Data": {"Initiation": Value::Object(init)},
        "Risk": o.get("risk").cloned().unwrap_or_else(|| Value::Object(Map::new())),
    });
    parse_consent_body(&body).map_err(|mut e| {
        e.path = rar_path(&e.path);
        e
    })
}

/// The `payment_initiation` request in an `authorization_details` parameter, if it has
/// an entry of that type (`None`: no such entry, or not a JSON array, which the
/// account-information parser reports). A payment entry must be the only entry: one
/// authorisation binds one consent. Errors carry the RAR path
/// (`authorization_details[0].instructedAmount.amount`).
pub fn payment_initiation_from_details(
    raw: &str,
) -> Option<Result<ConsentRequest, crate::ConsentError>> {
    use crate::{ConsentError, ErrorKind};
    let v: Value = serde_json::from_str(raw).ok()?;
    let items = v.as_array()?;
    let is_payment =
        |e: &Value| e.get("type").and_then(Value::as_str) == Some(RAR_TYPE_PAYMENT_INITIATION);
    let payments = items.iter().filter(|e| is_payment(e)).count();
    let refuse = |message: &str| ConsentError {
        kind: ErrorKind::Invalid,
        path: "authorization_details".into(),
        message: message.into(),
    };
    Some(match (payments, items.len()) {
        (0, _) => return None,
        (1, 1) => parse_payment_initiation_details(&items[0]).map_err(|e| ConsentError {
            kind: match e.code {
                codes::FIELD_MISSING => ErrorKind::Missing,
                codes::FIELD_UNEXPECTED => ErrorKind::Unexpected,
                _ => ErrorKind::Invalid,
            },
            path: if e.path.is_empty() {
                "authorization_details[0]".into()
            } else {
                format!("authorization_details[0].{}", e.path)
            },
            message: e.message,
        }),
        (1, _) => Err(refuse(
            "a payment_initiation entry cannot be combined with other entries",
        )),
        _ => Err(refuse("only one payment_initiation entry is allowed")),
    })
}

/// `Data.Initiation.InstructedAmount.Amount` → `instructedAmount.amount`.
fn rar_path(ob: &str) -> String {
    let p = ob.strip_prefix("Data.Initiation.").unwrap_or(ob);
    if p == "Risk" || p.starts_with("Risk.") {
        return format!("r{}", &p[1..]);
    }
    p.split('.')
        .map(|seg| {
            let mut c = seg.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    type Edit = Box<dyn Fn(&mut Value)>;

    fn consent_body() -> Value {
        json!({
            "Data": {"Initiation": {
                "InstructionIdentification": "ACME412",
                "EndToEndIdentification": "FRESCO.21302.GFX.20",
                "InstructedAmount": {"Amount": "165.88", "Currency": "KES"},
                "CreditorAccount": {"SchemeName": "KE.WEKEZA.AccountNumber",
                    "Identification": "0100123456789", "Name": "ACME Inc"},
                "RemittanceInformation": {"Reference": "FRESCO-101", "Unstructured": "Internal ops code 5120101"}
            }},
            "Risk": {"PaymentContextCode": "EcommerceGoods"}
        })
    }

    #[test]
    fn amounts_are_exact_with_currency_scale() {
        assert_eq!(parse_amount("165.88", "KES"), Ok(16588));
        assert_eq!(parse_amount("165.8", "KES"), Ok(16580));
        assert_eq!(parse_amount("165", "KES"), Ok(16500));
        assert_eq!(parse_amount("0.01", "GBP"), Ok(1));
        assert_eq!(parse_amount("1000", "JPY"), Ok(1000));
        assert_eq!(parse_amount("1.234", "KWD"), Ok(1234));
        assert!(
            parse_amount("1.5", "JPY").is_err(),
            "JPY has no minor units"
        );
        assert!(parse_amount("1.001", "KES").is_err(), "three places in KES");
        assert!(parse_amount("0.00", "KES").is_err(), "zero");
        for bad in [
            "-1.00",
            "1e3",
            "1.",
            ".5",
            " 1",
            "1,00",
            "",
            "12345678901234",
            "0x10",
        ] {
            assert!(parse_amount(bad, "KES").is_err(), "{bad:?}");
        }
        assert!(parse_amount("1.00", "XXX").is_err());
        assert_eq!(
            parse_amount("9999999999999.99", "KES"),
            Ok(999_999_999_999_999)
        );
        assert_eq!(format_minor(16588, "KES"), "165.88");
        assert_eq!(format_minor(5, "GBP"), "0.05");
        assert_eq!(format_minor(-5, "GBP"), "-0.05");
        assert_eq!(format_minor(1000, "JPY"), "1000");
        assert_eq!(format_minor(1234, "KWD"), "1.234");
    }

    #[test]
    fn consent_body_rules() {
        let ok = parse_consent_body(&consent_body()).unwrap();
        assert_eq!(ok.initiation.amount_minor(), Ok(16588));
        assert_eq!(ok.initiation.reference(), Some("FRESCO-101"));
        assert!(ok.initiation.debtor_account.is_none());
        let cases: Vec<(Edit, &str, &str)> = vec![
            (
                Box::new(|b| b["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!(165.88)),
                codes::FIELD_INVALID,
                "Data.Initiation.InstructedAmount.Amount",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("1.001")
                }),
                codes::FIELD_INVALID,
                "Data.Initiation.InstructedAmount.Amount",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["InstructedAmount"]["Currency"] = json!("kes")
                }),
                codes::FIELD_INVALID,
                "Data.Initiation.InstructedAmount.Currency",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["InstructedAmount"]["Currency"] = json!("ZZZ")
                }),
                codes::UNSUPPORTED_CURRENCY,
                "Data.Initiation.InstructedAmount.Currency",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]
                        .as_object_mut()
                        .unwrap()
                        .remove("CreditorAccount");
                }),
                codes::FIELD_MISSING,
                "Data.Initiation.CreditorAccount",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["CreditorAccount"]
                        .as_object_mut()
                        .unwrap()
                        .remove("Name");
                }),
                codes::FIELD_MISSING,
                "Data.Initiation.CreditorAccount.Name",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["CreditorAccount"]["SchemeName"] = json!("X.Y")
                }),
                codes::UNSUPPORTED_SCHEME,
                "Data.Initiation.CreditorAccount.SchemeName",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["InstructionIdentification"] = json!("x".repeat(36))
                }),
                codes::FIELD_INVALID,
                "Data.Initiation.InstructionIdentification",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]
                        .as_object_mut()
                        .unwrap()
                        .remove("EndToEndIdentification");
                }),
                codes::FIELD_MISSING,
                "Data.Initiation.EndToEndIdentification",
            ),
            (
                Box::new(|b| b["Data"]["Initiation"]["Extra"] = json!(1)),
                codes::FIELD_UNEXPECTED,
                "Data.Initiation.Extra",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["RemittanceInformation"]["Reference"] =
                        json!("r".repeat(36))
                }),
                codes::FIELD_INVALID,
                "Data.Initiation.RemittanceInformation.Reference",
            ),
            (
                Box::new(|b| {
                    b.as_object_mut().unwrap().remove("Risk");
                }),
                codes::FIELD_MISSING,
                "Risk",
            ),
            (
                Box::new(|b| b["Risk"] = json!([])),
                codes::FIELD_INVALID,
                "Risk",
            ),
            (
                Box::new(|b| b["Data"]["ReadRefundAccount"] = json!("Maybe")),
                codes::FIELD_INVALID,
                "Data.ReadRefundAccount",
            ),
        ];
        for (edit, code, path) in cases {
            let mut b = consent_body();
            edit(&mut b);
            let e = parse_consent_body(&b).unwrap_err();
            assert_eq!((e.code, e.path.as_str()), (code, path), "{b}");
        }
    }

    fn payment_of(consent: &Value) -> Value {
        let mut p = consent.clone();
        p["Data"]["ConsentId"] = json!("pc-1");
        p
    }

    #[test]
    fn payment_must_equal_consent() {
        let c = parse_consent_body(&consent_body()).unwrap();
        let d = PaymentConsentDetails::new(&c, OffsetDateTime::UNIX_EPOCH);
        let ok = parse_payment_body(&payment_of(&consent_body())).unwrap();
        assert_eq!(check_matches_consent(&ok, &d), Ok(()));
        // The same amount written with fewer places is the same money.
        let mut same = payment_of(&consent_body());
        same["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("165.880");
        assert!(parse_payment_body(&same).is_err(), "three places in KES");
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("165.89")
                }),
                "Data.Initiation.InstructedAmount",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["InstructedAmount"]["Currency"] = json!("GBP")
                }),
                "Data.Initiation.InstructedAmount",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["CreditorAccount"]["Identification"] = json!("0100999")
                }),
                "Data.Initiation.CreditorAccount",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["DebtorAccount"] =
                        json!({"SchemeName": "KE.WEKEZA.AccountNumber", "Identification": "1"})
                }),
                "Data.Initiation.DebtorAccount",
            ),
            (
                Box::new(|b| b["Data"]["Initiation"]["EndToEndIdentification"] = json!("other")),
                "Data.Initiation",
            ),
            (
                Box::new(|b| {
                    b["Data"]["Initiation"]["RemittanceInformation"]["Reference"] = json!("other")
                }),
                "Data.Initiation",
            ),
            (
                Box::new(|b| b["Risk"] = json!({"PaymentContextCode": "BillPayment"})),
                "Risk",
            ),
            (Box::new(|b| b["Risk"] = json!({})), "Risk"),
        ];
        for (edit, path) in cases {
            let mut b = payment_of(&consent_body());
            edit(&mut b);
            let p = parse_payment_body(&b).unwrap();
            let e = check_matches_consent(&p, &d).unwrap_err();
            assert_eq!((e.code, e.path.as_str()), (codes::CONSENT_MISMATCH, path));
        }
        let mut missing = payment_of(&consent_body());
        missing["Data"].as_object_mut().unwrap().remove("ConsentId");
        assert_eq!(
            parse_payment_body(&missing).unwrap_err().path,
            "Data.ConsentId"
        );
    }

    #[test]
    fn sandbox_clearing_by_amount() {
        assert_eq!(
            sandbox_clearing(10013),
            ClearingOutcome::Reject {
                after_secs: CLEARING_SECS
            }
        );
        assert_eq!(
            sandbox_clearing(10077),
            ClearingOutcome::Settle {
                after_secs: CLEARING_DELAYED_SECS
            }
        );
        assert_eq!(
            sandbox_clearing(10000),
            ClearingOutcome::Settle {
                after_secs: CLEARING_SECS
            }
        );
    }

    #[test]
    fn details_round_trip() {
        let c = parse_consent_body(&consent_body()).unwrap();
        let mut d = PaymentConsentDetails::new(&c, OffsetDateTime::UNIX_EPOCH);
        d.debtor_account_id = Some("acc-1".into());
        assert_eq!(PaymentConsentDetails::from_value(&d.to_value()).unwrap(), d);
        // The stored Initiation renders back as the OB shape.
        assert_eq!(
            d.initiation.to_value(),
            consent_body()["Data"]["Initiation"]
        );
    }

    #[test]
    fn rar_payment_initiation_maps_onto_the_consent_rules() {
        let ok = json!({
            "type": "payment_initiation",
            "instructedAmount": {"amount": "12.50", "currency": "KES"},
            "creditorAccount": {"schemeName": "KE.WEKEZA.AccountNumber", "identification": "0123456789"},
            "creditorName": "Bob's Shop",
            "remittanceInformation": {"reference": "INV-1"}
        });
        let r = parse_payment_initiation_details(&ok).unwrap();
        assert_eq!(r.initiation.amount_minor().unwrap(), 1250);
        assert_eq!(
            r.initiation.creditor_account.name.as_deref(),
            Some("Bob's Shop")
        );
        assert_eq!(r.initiation.end_to_end_identification, NOT_PROVIDED);
        assert_eq!(r.initiation.reference(), Some("INV-1"));
        let bad = |edit: &dyn Fn(&mut Value)| {
            let mut v = ok.clone();
            edit(&mut v);
            parse_payment_initiation_details(&v).unwrap_err()
        };
        let e = bad(&|v| v["instructedAmount"]["amount"] = json!("1.001"));
        assert_eq!(
            (e.code, e.path.as_str()),
            (codes::FIELD_INVALID, "instructedAmount.amount")
        );
        let e = bad(&|v| v["unknown"] = json!(1));
        assert_eq!(e.code, codes::FIELD_UNEXPECTED);
        let e = bad(&|v| v["locations"] = json!(["https://rs"]));
        assert_eq!(e.code, codes::FIELD_UNEXPECTED);
        let e = bad(&|v| v["creditorAccount"]["iban"] = json!("x"));
        assert_eq!(e.code, codes::FIELD_UNEXPECTED);
        let e = bad(&|v| v["instructedAmount"]["currency"] = json!("XXX"));
        assert_eq!(e.code, codes::UNSUPPORTED_CURRENCY);
        let e = bad(&|v| v["creditorAccount"]["name"] = json!("Other"));
        assert_eq!(e.path, "creditorName");
        let e = bad(&|v| drop(v.as_object_mut().unwrap().remove("creditorAccount")));
        assert_eq!(e.path, "creditorAccount");
    }

    #[test]
    fn a_payment_initiation_entry_stands_alone_and_comes_back_granted() {
        let entry = json!({
            "type": "payment_initiation",
            "instructedAmount": {"amount": "12.50", "currency": "KES"},
            "creditorAccount": {"schemeName": "KE.WEKEZA.AccountNumber", "identification": "0123456789", "name": "Bob"}
        });
        let one = json!([entry]).to_string();
        let r = payment_initiation_from_details(&one).unwrap().unwrap();
        assert_eq!(r.risk, json!({}));
        let ai = json!({"type": "account_information", "permissions": ["ReadBalances"]});
        assert!(payment_initiation_from_details(&json!([ai]).to_string()).is_none());
        assert!(payment_initiation_from_details("not json").is_none());
        for two in [json!([entry, entry]), json!([entry, ai])] {
            let e = payment_initiation_from_details(&two.to_string())
                .unwrap()
                .unwrap_err();
            assert_eq!(e.path, "authorization_details");
        }
        let mut neg = entry.clone();
        neg["instructedAmount"]["amount"] = json!("-1.00");
        let e = payment_initiation_from_details(&json!([neg]).to_string())
            .unwrap()
            .unwrap_err();
        assert_eq!(e.path, "authorization_details[0].instructedAmount.amount");

        let mut d = PaymentConsentDetails::new(&r, OffsetDateTime::UNIX_EPOCH);
        // The intent path's stored document does not change.
        assert!(d.to_value().get("source").is_none());
        d.source = crate::Source::Rar;
        d.debtor_account_id = Some("acc-1".into());
        let back = PaymentConsentDetails::from_value(&d.to_value()).unwrap();
        assert_eq!(back, d);
        let g = d.granted_authorization_detail("pdc-1");
        assert_eq!(g["type"], "payment_initiation");
        assert_eq!(g["consentId"], "pdc-1");
        assert_eq!(g["debtorAccountId"], "acc-1");
        assert_eq!(g["instructedAmount"], entry["instructedAmount"]);
        assert_eq!(g["creditorAccount"], entry["creditorAccount"]);
        assert_eq!(g["endToEndIdentification"], NOT_PROVIDED);
    }
}
