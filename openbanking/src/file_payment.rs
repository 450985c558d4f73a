//! File (bulk) payments (UK OB Read/Write v4 `file-payment-consents` and `file-payments`,
//! ADR 0016): the consent body, the two file formats, the checks an uploaded file must
//! pass against its consent, and the stored shape of a file-payment consent (kind
//! [`crate::KIND_FILE_PAYMENT`]).
//!
//! Every payment in a file is validated by the same rules as a domestic payment
//! ([`crate::payment`]: exact amounts with the currency's ISO 4217 scale, supported
//! account schemes, field lengths); errors name the item in `Path`.
//!
//! File formats (`FileType`):
//! * [`FILE_TYPE_JSON`] (`application/json`): `{"Data": {"DomesticPayments": [OBDomestic
//!   initiation, …]}}`; an item's path is `Data.DomesticPayments[i]` (from 0).
//! * [`FILE_TYPE_CSV`] (`text/csv`, UTF-8, RFC 4180 quoting, LF or CRLF): the header row
//!   [`CSV_HEADER`] exactly, then one payment per line; `Amount` an exact decimal string
//!   (`1250.50`, never `1,250.5e0`); empty cells are absent fields. An item's path is
//!   `Line[n]` (the header is line 1), followed by the OB field
//!   (`Line[3].InstructedAmount.Amount`).

use crate::payment::{
    AccountRef, Initiation, PaymentError, Remittance, account, codes, currency_scale, initiation,
    object, only, parse_amount, perr, req_text, text,
};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// The JSON batch: a list of domestic initiations.
pub const FILE_TYPE_JSON: &str = "UK.OBIE.PaymentInitiation.4.0";
/// The platform's CSV format (documented above and in the README).
pub const FILE_TYPE_CSV: &str = "KE.WEKEZA.PaymentInitiation.CSV.1";
pub const FILE_TYPES: &[&str] = &[FILE_TYPE_JSON, FILE_TYPE_CSV];

/// Largest file accepted (bytes).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Most payments in one file: the batch executes in one database transaction, which holds
/// the debtor account's row lock for its length.
pub const MAX_ITEMS: usize = 500;
/// At most this many item errors are reported for one upload.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// The CSV header row, in this order.
pub const CSV_HEADER: &[&str] = &[
    "InstructionIdentification",
    "EndToEndIdentification",
    "Amount",
    "Currency",
    "CreditorSchemeName",
    "CreditorIdentification",
    "CreditorName",
    "Reference",
    "Unstructured",
];

/// The media type an upload of `file_type` must carry.
pub fn content_type(file_type: &str) -> &'static str {
    if file_type == FILE_TYPE_CSV {
        "text/csv"
    } else {
        "application/json"
    }
}

/// `FileHash`: base64 (standard, padded) of the SHA-256 of the file's bytes.
pub fn file_hash(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// `OBFile` (Initiation of a file-payment consent), validated. `ControlSum` is kept as
/// sent (a JSON number or a decimal string) and compared by value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileInitiation {
    pub file_type: String,
    pub file_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_reference: Option<String>,
    pub number_of_transactions: String,
    pub control_sum: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_execution_date_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_instrument: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debtor_account: Option<AccountRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remittance_information: Option<Remittance>,
}

impl FileInitiation {
    pub fn count(&self) -> usize {
        self.number_of_transactions.parse().unwrap_or(0)
    }

    /// `ControlSum` as decimal text.
    pub fn control_sum_text(&self) -> String {
        match &self.control_sum {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A decimal `^\d{1,13}(\.\d{1,5})?$` scaled to 5 places, for comparing by value.
fn decimal_e5(s: &str) -> Option<i128> {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if i.is_empty() || i.len() > 13 || !digits(i) || f.len() > 5 || !digits(f) {
        return None;
    }
    if s.contains('.') && f.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for b in i.bytes().chain(f.bytes()) {
        v = v * 10 + i128::from(b - b'0');
    }
    for _ in f.len()..5 {
        v *= 10;
    }
    Some(v)
}

/// A validated `POST /file-payment-consents` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConsentRequest {
    pub initiation: FileInitiation,
}

/// A validated `POST /file-payments` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePaymentRequest {
    pub consent_id: String,
    pub initiation: FileInitiation,
}

/// One payee as the consent page previews it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayeePreview {
    pub name: String,
    pub scheme: String,
    pub identification: String,
    pub amount: String,
}

/// What an accepted upload established about the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub currency: String,
    pub count: usize,
    pub control_sum_minor: i64,
    /// The first few payees, in file order (consent page).
    pub first_payees: Vec<PayeePreview>,
    pub uploaded_at: i64,
}

/// How many payees the consent page lists before "and N more".
pub const PREVIEW_PAYEES: usize = 3;

/// The `details` document of a file-payment consent record. The consent is AWUP while
/// `file` is `None` and AWAU once a file was accepted (the store's status is
/// `AwaitingAuthorisation` for both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileConsentDetails {
    pub initiation: FileInitiation,
    #[serde(default)]
    pub file: Option<FileSummary>,
    #[serde(default)]
    pub debtor_account_id: Option<String>,
    #[serde(default)]
    pub file_payment_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub status_update_date_time: OffsetDateTime,
    #[serde(default)]
    pub status_reason: Option<crate::StatusReason>,
}

impl FileConsentDetails {
    pub fn new(req: &FileConsentRequest, now: OffsetDateTime) -> Self {
        Self {
            initiation: req.initiation.clone(),
            file: None,
            debtor_account_id: None,
            file_payment_id: None,
            status_update_date_time: now,
            status_reason: None,
        }
    }

    pub fn from_value(v: &Value) -> Result<Self, String> {
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

// ---- bodies ------------------------------------------------------------------------------

fn file_initiation(v: Option<&Value>, path: &str) -> Result<FileInitiation, PaymentError> {
    let o = object(v, path)?;
    let p = format!("{path}.");
    only(
        o,
        &[
            "FileType",
            "FileHash",
            "FileReference",
            "NumberOfTransactions",
            "ControlSum",
            "RequestedExecutionDateTime",
            "LocalInstrument",
            "DebtorAccount",
            "RemittanceInformation",
        ],
        &p,
    )?;
    let file_type = req_text(o, "FileType", &p, 40)?;
    if !FILE_TYPES.contains(&file_type.as_str()) {
        return Err(perr(
            codes::FIELD_INVALID,
            &format!("{p}FileType"),
            format!("supported file types: {}", FILE_TYPES.join(", ")),
        ));
    }
    let file_hash = req_text(o, "FileHash", &p, 44)?;
    let hash_ok = base64::engine::general_purpose::STANDARD
        .decode(&file_hash)
        .is_ok_and(|d| d.len() == 32);
    if !hash_ok {
        return Err(perr(
            codes::FIELD_INVALID,
            &format!("{p}FileHash"),
            "must be the base64 SHA-256 of the file",
        ));
    }
    let n = req_text(o, "NumberOfTransactions", &p, 15)?;
    let count: usize = n
        .parse()
        .ok()
        .filter(|c| n.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_ITEMS).contains(c))
        .ok_or_else(|| {
            perr(
                codes::FIELD_INVALID,
                &format!("{p}NumberOfTransactions"),
                format!("must be a whole number from 1 to {MAX_ITEMS}"),
            )
        })?;
    let _ = count;
    let control_sum = match o.get("ControlSum") {
        None | Some(Value::Null) => {
            return Err(perr(
                codes::FIELD_MISSING,
                &format!("{p}ControlSum"),
                "required",
            ));
        }
        Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
        Some(_) => {
            return Err(perr(
                codes::FIELD_INVALID,
                &format!("{p}ControlSum"),
                "must be a decimal number",
            ));
        }
    };
    let cs_text = match &control_sum {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if decimal_e5(&cs_text).is_none_or(|v| v == 0) {
        return Err(perr(
            codes::FIELD_INVALID,
            &format!("{p}ControlSum"),
            "must be an exact decimal above zero, at most 5 places",
        ));
    }
    let requested = text(o, "RequestedExecutionDateTime", &p, 40, false)?;
    if let Some(r) = &requested
        && OffsetDateTime::parse(r, &time::format_description::well_known::Rfc3339).is_err()
    {
        return Err(perr(
            codes::FIELD_INVALID,
            &format!("{p}RequestedExecutionDateTime"),
            "must be an ISO 8601 date-time with offset",
        ));
    }
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
    Ok(FileInitiation {
        file_type,
        file_hash,
        file_reference: text(o, "FileReference", &p, 40, false)?,
        number_of_transactions: n,
        control_sum,
        requested_execution_date_time: requested,
        local_instrument: text(o, "LocalInstrument", &p, 50, false)?,
        debtor_account: match o.get("DebtorAccount") {
            None | Some(Value::Null) => None,
            v => Some(account(v, &format!("{p}DebtorAccount"), false)?),
        },
        remittance_information: remittance,
    })
}

fn data(body: &Value, allowed: &[&str]) -> Result<Map<String, Value>, PaymentError> {
    let root = body
        .as_object()
        .ok_or_else(|| perr(codes::FIELD_INVALID, "", "the body must be a JSON object"))?;
    only(root, &["Data"], "")?;
    let d = object(root.get("Data"), "Data")?;
    only(d, allowed, "Data.")?;
    Ok(d.clone())
}

/// `POST /file-payment-consents`: `{"Data": {"Initiation": {...}}}`.
pub fn parse_consent_body(body: &Value) -> Result<FileConsentRequest, PaymentError> {
    let d = data(body, &["Initiation"])?;
    Ok(FileConsentRequest {
        initiation: file_initiation(d.get("Initiation"), "Data.Initiation")?,
    })
}

/// `POST /file-payments`: `{"Data": {"ConsentId": "...", "Initiation": {...}}}`.
pub fn parse_payment_body(body: &Value) -> Result<FilePaymentRequest, PaymentError> {
    let d = data(body, &["ConsentId", "Initiation"])?;
    Ok(FilePaymentRequest {
        consent_id: req_text(&d, "ConsentId", "Data.", 128)?,
        initiation: file_initiation(d.get("Initiation"), "Data.Initiation")?,
    })
}

/// UK OB: the file payment's `Initiation` equals the consent's (`ControlSum` by value).
pub fn check_matches_consent(
    payment: &FilePaymentRequest,
    consent: &FileConsentDetails,
) -> Result<(), PaymentError> {
    let mismatch = |path: &str| {
        perr(
            codes::CONSENT_MISMATCH,
            path,
            "does not match the authorised consent",
        )
    };
    let (a, b) = (&payment.initiation, &consent.initiation);
    if decimal_e5(&a.control_sum_text()) != decimal_e5(&b.control_sum_text()) {
        return Err(mismatch("Data.Initiation.ControlSum"));
    }
    let mut a2 = a.clone();
    a2.control_sum = b.control_sum.clone();
    for (same, path) in [
        (a2.file_hash == b.file_hash, "Data.Initiation.FileHash"),
        (
            a2.number_of_transactions == b.number_of_transactions,
            "Data.Initiation.NumberOfTransactions",
        ),
        (
            a2.debtor_account == b.debtor_account,
            "Data.Initiation.DebtorAccount",
        ),
        (a2 == *b, "Data.Initiation"),
    ] {
        if !same {
            return Err(mismatch(path));
        }
    }
    Ok(())
}

// ---- the file --------------------------------------------------------------------------------

/// A file that passed every check against its consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    pub items: Vec<Initiation>,
    pub currency: String,
    pub control_sum_minor: i64,
}

impl CheckedFile {
    pub fn summary(&self, uploaded_at: i64) -> FileSummary {
        FileSummary {
            currency: self.currency.clone(),
            count: self.items.len(),
            control_sum_minor: self.control_sum_minor,
            first_payees: self
                .items
                .iter()
                .take(PREVIEW_PAYEES)
                .map(|i| PayeePreview {
                    name: i.creditor_account.name.clone().unwrap_or_default(),
                    scheme: i.creditor_account.scheme_name.clone(),
                    identification: i.creditor_account.identification.clone(),
                    amount: i.instructed_amount.amount.clone(),
                })
                .collect(),
            uploaded_at,
        }
    }
}

fn json_items(text: &str) -> Result<Vec<(String, Value)>, PaymentError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|_| perr(codes::FIELD_INVALID, "", "the file is not valid JSON"))?;
    let d = data(&v, &["DomesticPayments"])?;
    match d.get("DomesticPayments") {
        Some(Value::Array(a)) => Ok(a
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("Data.DomesticPayments[{i}]"), v.clone()))
            .collect()),
        None | Some(Value::Null) => Err(perr(
            codes::FIELD_MISSING,
            "Data.DomesticPayments",
            "required",
        )),
        Some(_) => Err(perr(
            codes::FIELD_INVALID,
            "Data.DomesticPayments",
            "must be an array",
        )),
    }
}

/// RFC 4180 records with the line each starts on (quoted fields may hold commas, quotes
/// as `""` and line breaks).
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, PaymentError> {
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut start = 1usize;
    let mut field = String::new();
    let mut fields: Vec<String> = Vec::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let bad = |l: usize, m: &str| perr(codes::FIELD_INVALID, &format!("Line[{l}]"), m);
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            '"' => return Err(bad(line, "a quote inside an unquoted field")),
            ',' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
                out.push((start, std::mem::take(&mut fields)));
                line += 1;
                start = line;
            }
            _ if was_quoted => return Err(bad(line, "text after a closing quote")),
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(bad(start, "an unterminated quoted field"));
    }
    if !field.is_empty() || !fields.is_empty() || was_quoted {
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

fn csv_items(text: &str) -> Result<Vec<(String, Value)>, PaymentError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = csv_records(text)?;
    let mut records = records.into_iter();
    match records.next() {
        Some((_, h)) if h.iter().map(String::as_str).eq(CSV_HEADER.iter().copied()) => {}
        _ => {
            return Err(perr(
                codes::FIELD_INVALID,
                "Line[1]",
                format!("the header row must be {}", CSV_HEADER.join(",")),
            ));
        }
    }
    let mut out = Vec::new();
    for (line, r) in records {
        let path = format!("Line[{line}]");
        if r.len() == 1 && r[0].is_empty() {
            continue; // a blank line
        }
        if r.len() != CSV_HEADER.len() {
            return Err(perr(
                codes::FIELD_INVALID,
                &path,
                format!("expected {} fields, found {}", CSV_HEADER.len(), r.len()),
            ));
        }
        let cell = |i: usize| (!r[i].is_empty()).then(|| Value::String(r[i].clone()));
        let mut o = Map::new();
        let put = |m: &mut Map<String, Value>, k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        put(&mut o, "InstructionIdentification", cell(0));
        put(&mut o, "EndToEndIdentification", cell(1));
        let mut amount = Map::new();
        put(&mut amount, "Amount", cell(2));
        put(&mut amount, "Currency", cell(3));
        o.insert("InstructedAmount".into(), Value::Object(amount));
        let mut creditor = Map::new();
        put(&mut creditor, "SchemeName", cell(4));
        put(&mut creditor, "Identification", cell(5));
        put(&mut creditor, "Name", cell(6));
        o.insert("CreditorAccount".into(), Value::Object(creditor));
        if cell(7).is_some() || cell(8).is_some() {
            let mut rem = Map::new();
            put(&mut rem, "Reference", cell(7));
            put(&mut rem, "Unstructured", cell(8));
            o.insert("RemittanceInformation".into(), Value::Object(rem));
        }
        out.push((path, Value::Object(o)));
    }
    Ok(out)
}

/// Checks an uploaded file against its consent: the hash first, then every item (the
/// domestic payment rules, no `DebtorAccount` of its own, one currency, unique
/// `InstructionIdentification`), then `NumberOfTransactions` and `ControlSum`. All item
/// errors found (up to [`MAX_REPORTED_ERRORS`]) are returned together.
pub fn check_file(init: &FileInitiation, bytes: &[u8]) -> Result<CheckedFile, Vec<PaymentError>> {
    let one = |e: PaymentError| vec![e];
    if bytes.len() > MAX_FILE_BYTES {
        return Err(one(perr(
            codes::FIELD_INVALID,
            "",
            format!("the file exceeds {MAX_FILE_BYTES} bytes"),
        )));
    }
    if file_hash(bytes) != init.file_hash {
        return Err(one(perr(
            codes::CONSENT_MISMATCH,
            "Data.Initiation.FileHash",
            "the file's SHA-256 does not match the consent's FileHash",
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| one(perr(codes::FIELD_INVALID, "", "the file must be UTF-8")))?;
    let raw = if init.file_type == FILE_TYPE_CSV {
        csv_items(text)
    } else {
        json_items(text)
    }
    .map_err(one)?;
    if raw.len() > MAX_ITEMS {
        return Err(one(perr(
            codes::FIELD_INVALID,
            "",
            format!("a file holds at most {MAX_ITEMS} payments"),
        )));
    }
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(raw.len());
    let mut ids = BTreeSet::new();
    let mut currency: Option<String> = None;
    for (path, v) in &raw {
        let i = match initiation(Some(v), path) {
            Ok(i) => i,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if i.debtor_account.is_some() {
            errors.push(perr(
                codes::FIELD_UNEXPECTED,
                &format!("{path}.DebtorAccount"),
                "a file's payments all leave the consent's debtor account",
            ));
        }
        let cur = &i.instructed_amount.currency;
        match &currency {
            None => currency = Some(cur.clone()),
            Some(c) if c != cur => errors.push(perr(
                codes::FIELD_INVALID,
                &format!("{path}.InstructedAmount.Currency"),
                format!("every payment of a file is in one currency ({c})"),
            )),
            Some(_) => {}
        }
        if !ids.insert(i.instruction_identification.clone()) {
            errors.push(perr(
                codes::FIELD_INVALID,
                &format!("{path}.InstructionIdentification"),
                "InstructionIdentification repeats an earlier payment's",
            ));
        }
        items.push(i);
    }
    if !errors.is_empty() {
        errors.truncate(MAX_REPORTED_ERRORS);
        return Err(errors);
    }
    if items.len() != init.count() {
        return Err(one(perr(
            codes::CONSENT_MISMATCH,
            "Data.Initiation.NumberOfTransactions",
            format!(
                "the file holds {} payments; the consent says {}",
                items.len(),
                init.number_of_transactions
            ),
        )));
    }
    let currency = currency.unwrap_or_default();
    let mut sum: i64 = 0;
    for i in &items {
        let m = i
            .amount_minor()
            .map_err(|e| one(perr(codes::FIELD_INVALID, "", e)))?;
        sum = sum
            .checked_add(m)
            .ok_or_else(|| one(perr(codes::FIELD_INVALID, "", "the amounts overflow")))?;
    }
    let declared = parse_amount(&init.control_sum_text(), &currency).ok();
    if declared != Some(sum) {
        return Err(one(perr(
            codes::CONSENT_MISMATCH,
            "Data.Initiation.ControlSum",
            format!(
                "the file's payments add up to {} {currency}; the consent says {}",
                crate::payment::format_minor(sum, &currency),
                init.control_sum_text()
            ),
        )));
    }
    if currency_scale(&currency).is_none() {
        return Err(one(perr(codes::UNSUPPORTED_CURRENCY, "", "currency")));
    }
    Ok(CheckedFile {
        items,
        currency,
        control_sum_minor: sum,
    })
}

/// The status of a file payment from its items' (ISO 20022 group status): `ACSP` while
/// any item is still in clearing, `ACSC` when all settled, `RJCT` when all were
/// rejected, `PART` (partially accepted) when the final statuses differ.
pub fn batch_status<'a>(items: impl IntoIterator<Item = &'a str>) -> &'static str {
    let (mut any, mut pending, mut settled, mut rejected) = (false, false, false, false);
    for s in items {
        any = true;
        match s {
            "ACSC" => settled = true,
            "RJCT" => rejected = true,
            _ => pending = true,
        }
    }
    match (any, pending, settled, rejected) {
        (false, ..) => "RCVD",
        (_, true, ..) => "ACSP",
        (_, _, true, true) => "PART",
        (_, _, false, true) => "RJCT",
        _ => "ACSC",
    }
}

/// A JSON item as the report file renders it.
pub fn report_line(
    instruction_id: &str,
    amount: &str,
    currency: &str,
    status: &str,
    reason: Option<&str>,
) -> Value {
    let mut v = json!({
        "InstructionIdentification": instruction_id,
        "InstructedAmount": {"Amount": amount, "Currency": currency},
        "Status": status,
    });
    if let Some(r) = reason {
        v["StatusReason"] = json!(r);
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn item(id: &str, amount: &str) -> Value {
        json!({
            "InstructionIdentification": id,
            "EndToEndIdentification": format!("E2E-{id}"),
            "InstructedAmount": {"Amount": amount, "Currency": "KES"},
            "CreditorAccount": {"SchemeName": "KE.WEKEZA.AccountNumber",
                "Identification": "0100123456789", "Name": "ACME"},
            "RemittanceInformation": {"Reference": "R1"}
        })
    }

    fn json_file(items: &[Value]) -> Vec<u8> {
        json!({"Data": {"DomesticPayments": items}})
            .to_string()
            .into_bytes()
    }

    fn consent(file: &[u8], ty: &str, n: &str, sum: Value) -> FileInitiation {
        parse_consent_body(&json!({"Data": {"Initiation": {
            "FileType": ty, "FileHash": file_hash(file),
            "NumberOfTransactions": n, "ControlSum": sum
        }}}))
        .unwrap()
        .initiation
    }

    fn first(r: Result<CheckedFile, Vec<PaymentError>>) -> (String, String) {
        let e = r.unwrap_err();
        (e[0].code.to_owned(), e[0].path.clone())
    }

    #[test]
    fn json_file_checks() {
        let f = json_file(&[item("A", "10.50"), item("B", "2")]);
        let c = consent(&f, FILE_TYPE_JSON, "2", json!(12.5));
        let ok = check_file(&c, &f).unwrap();
        assert_eq!(ok.control_sum_minor, 1250);
        assert_eq!(ok.items.len(), 2);
        // The sum as a string, same value.
        assert!(check_file(&consent(&f, FILE_TYPE_JSON, "2", json!("12.50")), &f).is_ok());
        assert_eq!(
            first(check_file(
                &consent(&f, FILE_TYPE_JSON, "3", json!("12.50")),
                &f
            )),
            (
                codes::CONSENT_MISMATCH.into(),
                "Data.Initiation.NumberOfTransactions".into()
            )
        );
        assert_eq!(
            first(check_file(
                &consent(&f, FILE_TYPE_JSON, "2", json!("12.51")),
                &f
            )),
            (
                codes::CONSENT_MISMATCH.into(),
                "Data.Initiation.ControlSum".into()
            )
        );
        let mut other = f.clone();
        other.push(b' ');
        assert_eq!(
            first(check_file(&c, &other)),
            (
                codes::CONSENT_MISMATCH.into(),
                "Data.Initiation.FileHash".into()
            )
        );
        // Item rules name the item.
        let bad = json_file(&[item("A", "1.001"), item("B", "2")]);
        assert_eq!(
            first(check_file(
                &consent(&bad, FILE_TYPE_JSON, "2", json!("3.001")),
                &bad
            )),
            (
                codes::FIELD_INVALID.into(),
                "Data.DomesticPayments[0].InstructedAmount.Amount".into()
            )
        );
        let mut cur = item("B", "2");
        cur["InstructedAmount"]["Currency"] = json!("ZZZ");
        let bad = json_file(&[item("A", "1"), cur]);
        assert_eq!(
            first(check_file(
                &consent(&bad, FILE_TYPE_JSON, "2", json!("3")),
                &bad
            )),
            (
                codes::UNSUPPORTED_CURRENCY.into(),
                "Data.DomesticPayments[1].InstructedAmount.Currency".into()
            )
        );
        let dup = json_file(&[item("A", "1"), item("A", "2")]);
        assert_eq!(
            first(check_file(
                &consent(&dup, FILE_TYPE_JSON, "2", json!("3")),
                &dup
            )),
            (
                codes::FIELD_INVALID.into(),
                "Data.DomesticPayments[1].InstructionIdentification".into()
            )
        );
    }

    #[test]
    fn csv_file_checks() {
        let csv = "InstructionIdentification,EndToEndIdentification,Amount,Currency,CreditorSchemeName,CreditorIdentification,CreditorName,Reference,Unstructured\r\n\
                   A,E-A,10.50,KES,KE.WEKEZA.AccountNumber,0100123,\"Shop, \"\"Best\"\"\",R1,\n\
                   B,E-B,2,KES,KE.MPESA.MSISDN,254700000001,Jane,,\n";
        let c = consent(csv.as_bytes(), FILE_TYPE_CSV, "2", json!("12.5"));
        let ok = check_file(&c, csv.as_bytes()).unwrap();
        assert_eq!(
            ok.items[0].creditor_account.name.as_deref(),
            Some("Shop, \"Best\"")
        );
        assert!(ok.items[1].remittance_information.is_none());
        let bad = csv.replace("10.50,KES", "10.505,KES");
        assert_eq!(
            first(check_file(
                &consent(bad.as_bytes(), FILE_TYPE_CSV, "2", json!("12.505")),
                bad.as_bytes()
            )),
            (
                codes::FIELD_INVALID.into(),
                "Line[2].InstructedAmount.Amount".into()
            )
        );
        let bad = csv.replace("KE.MPESA.MSISDN", "XX.Other");
        assert_eq!(
            first(check_file(
                &consent(bad.as_bytes(), FILE_TYPE_CSV, "2", json!("12.5")),
                bad.as_bytes()
            )),
            (
                codes::UNSUPPORTED_SCHEME.into(),
                "Line[3].CreditorAccount.SchemeName".into()
            )
        );
        let bad = csv.replace("Unstructured\r\n", "Note\r\n");
        assert_eq!(
            first(check_file(
                &consent(bad.as_bytes(), FILE_TYPE_CSV, "2", json!("12.5")),
                bad.as_bytes()
            ))
            .1,
            "Line[1]"
        );
    }

    #[test]
    fn consent_and_payment_bodies() {
        let f = json_file(&[item("A", "1")]);
        let c = consent(&f, FILE_TYPE_JSON, "1", json!("1.00"));
        let d = FileConsentDetails::new(
            &FileConsentRequest {
                initiation: c.clone(),
            },
            OffsetDateTime::UNIX_EPOCH,
        );
        let pay = |i: &FileInitiation| {
            parse_payment_body(&json!({"Data": {"ConsentId": "x", "Initiation": i.to_value()}}))
                .unwrap()
        };
        assert_eq!(check_matches_consent(&pay(&c), &d), Ok(()));
        let mut same = c.clone();
        same.control_sum = json!(1);
        assert_eq!(check_matches_consent(&pay(&same), &d), Ok(()));
        let mut other = c.clone();
        other.number_of_transactions = "2".into();
        assert_eq!(
            check_matches_consent(&pay(&other), &d).unwrap_err().path,
            "Data.Initiation.NumberOfTransactions"
        );
        other = c.clone();
        other.file_reference = Some("x".into());
        assert_eq!(
            check_matches_consent(&pay(&other), &d).unwrap_err().path,
            "Data.Initiation"
        );
        for (edit, path) in [
            (json!({"FileType": "X"}), "Data.Initiation.FileType"),
            (json!({"FileHash": "abc"}), "Data.Initiation.FileHash"),
            (
                json!({"NumberOfTransactions": "0"}),
                "Data.Initiation.NumberOfTransactions",
            ),
            (json!({"ControlSum": "1e3"}), "Data.Initiation.ControlSum"),
            (json!({"Extra": 1}), "Data.Initiation.Extra"),
        ] {
            let mut b = json!({"Data": {"Initiation": c.to_value()}});
            for (k, v) in edit.as_object().unwrap() {
                b["Data"]["Initiation"][k] = v.clone();
            }
            assert_eq!(parse_consent_body(&b).unwrap_err().path, path);
        }
        assert_eq!(
            FileConsentDetails::from_value(&d.to_value()).unwrap(),
            d,
            "round trip"
        );
    }

    #[test]
    fn batch_status_aggregates() {
        assert_eq!(batch_status(["ACSC", "ACSC"]), "ACSC");
        assert_eq!(batch_status(["ACSC", "ACSP"]), "ACSP");
        assert_eq!(batch_status(["ACSC", "RJCT"]), "PART");
        assert_eq!(batch_status(["RJCT"]), "RJCT");
    }
}
