//! UK Open Banking Read/Write v4 response shapes (account-info-openapi) and the mapping
//! from the core bank's model, with the Basic/Detail field rules applied here:
//! * accounts: `Account` (scheme, identification, name) and `Servicer` only with
//!   ReadAccountsDetail;
//! * transactions: `TransactionInformation`, `Balance`, `MerchantDetails`,
//!   `CreditorAccount`/`DebtorAccount` only with ReadTransactionsDetail;
//! * beneficiaries and standing orders: `CreditorAccount` only with *Detail.

use core_bank as cb;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

pub fn dt(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn date(d: time::Date) -> String {
    dt(d.midnight().assume_offset(cb::EAT))
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Links {
    #[serde(rename = "Self")]
    pub self_: String,
    #[serde(rename = "First", skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(rename = "Prev", skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    #[serde(rename = "Next", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    #[serde(rename = "Last", skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_available_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_available_date_time: Option<String>,
}

/// The OB response envelope.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope<T: ToSchema> {
    pub data: T,
    pub links: Links,
    pub meta: Meta,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Amount {
    /// Decimal with the currency's minor digits, never negative.
    pub amount: String,
    pub currency: String,
}

impl From<cb::Money> for Amount {
    fn from(m: cb::Money) -> Self {
        Self {
            amount: m.abs_decimal(),
            currency: m.currency.code().to_owned(),
        }
    }
}

fn indicator(m: cb::Money) -> &'static str {
    if m.is_credit() { "Credit" } else { "Debit" }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CashAccount {
    pub scheme_name: String,
    pub identification: String,
    pub name: String,
}

impl From<&cb::AccountIdentification> for CashAccount {
    fn from(a: &cb::AccountIdentification) -> Self {
        Self {
            scheme_name: a.scheme.clone(),
            identification: a.identification.clone(),
            name: a.name.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct Servicer {
    pub scheme_name: String,
    pub identification: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObAccount {
    pub account_id: String,
    pub status: String,
    pub currency: String,
    /// `Personal` / `Business`.
    pub account_category: String,
    /// ISO 20022 account type: `CACC`, `SVGS`, `CARD`.
    pub account_type_code: String,
    pub description: String,
    pub nickname: String,
    pub opening_date: String,
    /// ReadAccountsDetail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Vec<CashAccount>>,
    /// ReadAccountsDetail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servicer: Option<Servicer>,
}

pub fn account(a: &cb::Account, detail: bool) -> ObAccount {
    ObAccount {
        account_id: a.id.clone(),
        status: "Enabled".into(),
        currency: a.currency.code().into(),
        account_category: "Personal".into(),
        account_type_code: match a.kind {
            cb::AccountKind::Current => "CACC",
            cb::AccountKind::Savings => "SVGS",
            cb::AccountKind::CreditCard => "CARD",
        }
        .into(),
        description: a.description.clone(),
        nickname: a.nickname.clone(),
        opening_date: date(a.opening_date),
        account: detail.then(|| vec![CashAccount::from(&a.identification)]),
        servicer: detail.then(|| Servicer {
            scheme_name: "UK.OBIE.BICFI".into(),
            identification: a.servicer_bic.clone(),
        }),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct AccountsData {
    pub account: Vec<ObAccount>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct CreditLine {
    pub included: bool,
    /// `Credit` (card limit) or `Pre-Agreed` (arranged overdraft).
    #[serde(rename = "Type")]
    pub kind: String,
    pub amount: Amount,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObBalance {
    pub account_id: String,
    pub credit_debit_indicator: String,
    /// `ITBD` (interim booked) or `ITAV` (interim available).
    #[serde(rename = "Type")]
    pub kind: String,
    pub date_time: String,
    pub amount: Amount,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credit_line: Option<Vec<CreditLine>>,
}

pub fn balances(b: &cb::Balances) -> [ObBalance; 2] {
    let line = b.credit_line.as_ref().map(|l| {
        vec![CreditLine {
            included: l.included,
            kind: match l.kind {
                cb::CreditLineKind::Credit => "Credit",
                cb::CreditLineKind::PreAgreed => "Pre-Agreed",
            }
            .into(),
            amount: l.limit.into(),
        }]
    });
    [
        ObBalance {
            account_id: b.account_id.clone(),
            credit_debit_indicator: indicator(b.booked).into(),
            kind: "ITBD".into(),
            date_time: dt(b.as_of),
            amount: b.booked.into(),
            credit_line: None,
        },
        ObBalance {
            account_id: b.account_id.clone(),
            credit_debit_indicator: indicator(b.available).into(),
            kind: "ITAV".into(),
            date_time: dt(b.as_of),
            amount: b.available.into(),
            credit_line: line,
        },
    ]
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BalancesData {
    pub balance: Vec<ObBalance>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BankTransactionCode {
    pub code: String,
    pub sub_code: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ProprietaryBankTransactionCode {
    pub code: String,
    pub issuer: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TransactionBalance {
    pub amount: Amount,
    pub credit_debit_indicator: String,
    #[serde(rename = "Type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MerchantDetails {
    pub merchant_name: String,
    pub merchant_category_code: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObTransaction {
    pub account_id: String,
    pub transaction_id: String,
    /// ReadTransactionsDetail only (as in the transaction alert, ADR 0018).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_reference: Option<String>,
    pub credit_debit_indicator: String,
    /// `BOOK` (booked).
    pub status: String,
    pub booking_date_time: String,
    pub value_date_time: String,
    pub amount: Amount,
    pub bank_transaction_code: BankTransactionCode,
    pub proprietary_bank_transaction_code: ProprietaryBankTransactionCode,
    /// ReadTransactionsDetail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_information: Option<String>,
    /// ReadTransactionsDetail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<TransactionBalance>,
    /// ReadTransactionsDetail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merchant_details: Option<MerchantDetails>,
    /// ReadTransactionsDetail only (debits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creditor_account: Option<CashAccount>,
    /// ReadTransactionsDetail only (credits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debtor_account: Option<CashAccount>,
}

pub fn transaction(t: &cb::Transaction, detail: bool) -> ObTransaction {
    let direction = t.direction();
    let (code, sub) = t.kind.bank_transaction_code(direction);
    let party = t
        .counterparty
        .as_ref()
        .filter(|_| detail)
        .map(|c| CashAccount {
            scheme_name: c.scheme.to_string(),
            identification: c.identification.to_string(),
            name: c.name.to_string(),
        });
    let (creditor_account, debtor_account) = match direction {
        cb::Direction::Debit => (party, None),
        cb::Direction::Credit => (None, party),
    };
    ObTransaction {
        account_id: t.account_id.clone(),
        transaction_id: t.transaction_id.clone(),
        transaction_reference: Some(t.reference.clone()).filter(|r| detail && !r.is_empty()),
        credit_debit_indicator: indicator(t.amount).into(),
        status: "BOOK".into(),
        booking_date_time: dt(t.booking),
        value_date_time: dt(t.value),
        amount: t.amount.into(),
        bank_transaction_code: BankTransactionCode {
            code: code.into(),
            sub_code: sub.into(),
        },
        proprietary_bank_transaction_code: ProprietaryBankTransactionCode {
            code: format!("{:?}", t.kind),
            issuer: "Wekeza".into(),
        },
        transaction_information: detail.then(|| t.description.clone()),
        balance: detail.then(|| TransactionBalance {
            amount: t.running_balance.into(),
            credit_debit_indicator: indicator(t.running_balance).into(),
            kind: "ITBD".into(),
        }),
        merchant_details: t
            .merchant
            .as_ref()
            .filter(|_| detail)
            .map(|m| MerchantDetails {
                merchant_name: m.name.to_string(),
                merchant_category_code: format!("{:04}", m.mcc),
            }),
        creditor_account,
        debtor_account,
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TransactionsData {
    pub transaction: Vec<ObTransaction>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObBeneficiary {
    pub account_id: String,
    pub beneficiary_id: String,
    pub reference: String,
    /// `Trusted` / `Ordinary`.
    pub beneficiary_type: String,
    /// ReadBeneficiariesDetail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creditor_account: Option<CashAccount>,
}

pub fn beneficiary(b: &cb::Beneficiary, detail: bool) -> ObBeneficiary {
    ObBeneficiary {
        account_id: b.account_id.clone(),
        beneficiary_id: b.beneficiary_id.clone(),
        reference: b.reference.clone(),
        beneficiary_type: if b.is_trusted { "Trusted" } else { "Ordinary" }.into(),
        creditor_account: detail.then(|| CashAccount::from(&b.creditor)),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct BeneficiariesData {
    pub beneficiary: Vec<ObBeneficiary>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObStandingOrder {
    pub account_id: String,
    pub standing_order_id: String,
    /// e.g. `IntrvlMnthDay:01:01` (every month, on the 1st).
    pub frequency: String,
    pub reference: String,
    pub first_payment_date_time: String,
    pub next_payment_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_payment_date_time: Option<String>,
    /// `Active` / `Inactive`.
    pub standing_order_status_code: String,
    pub first_payment_amount: Amount,
    pub next_payment_amount: Amount,
    /// ReadStandingOrdersDetail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creditor_account: Option<CashAccount>,
}

pub fn standing_order(s: &cb::StandingOrder, detail: bool) -> ObStandingOrder {
    ObStandingOrder {
        account_id: s.account_id.clone(),
        standing_order_id: s.standing_order_id.clone(),
        frequency: format!("IntrvlMnthDay:01:{:02}", s.day_of_month),
        reference: s.reference.clone(),
        first_payment_date_time: date(s.first_payment),
        next_payment_date_time: date(s.next_payment),
        last_payment_date_time: s.last_payment.map(date),
        standing_order_status_code: if s.is_active { "Active" } else { "Inactive" }.into(),
        first_payment_amount: s.amount.into(),
        next_payment_amount: s.amount.into(),
        creditor_account: detail.then(|| CashAccount::from(&s.creditor)),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StandingOrdersData {
    pub standing_order: Vec<ObStandingOrder>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PostalAddress {
    pub address_type: String,
    pub address_line: Vec<String>,
    pub town_name: String,
    pub post_code: String,
    pub country: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ObParty {
    pub party_id: String,
    pub party_number: String,
    /// `Sole`.
    pub party_type: String,
    pub name: String,
    pub full_legal_name: String,
    pub email_address: String,
    pub mobile: String,
    pub address: Vec<PostalAddress>,
    /// Present when read through an account: `UK.OBIE.Owner`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_role: Option<String>,
}

pub fn party(p: &cb::Party) -> ObParty {
    ObParty {
        party_id: p.party_id.clone(),
        party_number: p.party_number.clone(),
        party_type: "Sole".into(),
        name: p.name.clone(),
        full_legal_name: p.full_legal_name.clone(),
        email_address: p.email.clone(),
        mobile: p.phone.clone(),
        address: vec![PostalAddress {
            address_type: "Residential".into(),
            address_line: p.address.lines.clone(),
            town_name: p.address.town.clone(),
            post_code: p.address.post_code.clone(),
            country: p.address.country.clone(),
        }],
        account_role: p.account_role.map(|r| match r {
            cb::AccountRole::Owner => "UK.OBIE.Owner".to_owned(),
        }),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PartyData {
    pub party: ObParty,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct PartiesData {
    pub party: Vec<ObParty>,
}
