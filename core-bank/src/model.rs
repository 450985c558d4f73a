//! The customer-facing data model of the core bank: what the [`crate::CoreBank`] seam
//! returns. Plain data, owned, cheap to clone (shared strings are `Arc<str>`).

use crate::money::{Currency, Money};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::{Date, OffsetDateTime};

pub type CustomerId = String;
pub type AccountId = String;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub lines: Vec<String>,
    pub town: String,
    pub post_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    /// The sandbox login name (`alice`); also the default external subject.
    pub username: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub address: Address,
    pub party_id: String,
    pub party_number: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountKind {
    Current,
    Savings,
    CreditCard,
}

/// How an account is identified to the outside (an account number, a masked PAN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountIdentification {
    /// e.g. `KE.WEKEZA.AccountNumber`, `UK.OBIE.PAN`, `KE.MPESA.MSISDN`.
    pub scheme: String,
    pub identification: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub customer_id: CustomerId,
    pub kind: AccountKind,
    pub currency: Currency,
    pub nickname: String,
    pub description: String,
    pub opening_date: Date,
    pub identification: AccountIdentification,
    /// Servicing institution BIC.
    pub servicer_bic: String,
    /// Arranged overdraft (current account) or card limit, in minor units; 0 if none.
    pub credit_limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreditLineKind {
    /// An arranged overdraft on a current account.
    PreAgreed,
    /// A card's credit limit.
    Credit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditLine {
    pub kind: CreditLineKind,
    pub limit: Money,
    /// Whether the line is included in `available`.
    pub included: bool,
}

/// Balances derived from the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    pub account_id: AccountId,
    /// Sum of every booked ledger entry on the account.
    pub booked: Money,
    /// `booked` plus any included credit line.
    pub available: Money,
    pub credit_line: Option<CreditLine>,
    /// Booking time of the latest entry (or the account opening when there is none).
    pub as_of: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    Credit,
    Debit,
}

/// What kind of movement a posting is; drives descriptions and bank transaction codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxKind {
    OpeningBalance,
    Salary,
    ForeignIncome,
    Rent,
    MobileMoneyOut,
    MobileMoneyIn,
    Supermarket,
    Fuel,
    Restaurant,
    Subscription,
    Utilities,
    Airtime,
    CardRepayment,
    SavingsTransfer,
    Interest,
    Fee,
    FxConversion,
    /// A posting of the durable payment ledger (ADR 0011): a payment, its return, an
    /// incoming transfer. Listed by the resource server's `LedgerBank`.
    Payment,
}

impl TxKind {
    /// ISO 20022 bank transaction code (domain-family, sub-family).
    pub fn bank_transaction_code(self, direction: Direction) -> (&'static str, &'static str) {
        use Direction::*;
        match (self, direction) {
            (TxKind::Interest, _) => ("ACMT-MDOP", "INTR"),
            (TxKind::Fee, _) => ("ACMT-MDOP", "CHRG"),
            (TxKind::FxConversion, _) => ("FORX-SPOT", "OTHR"),
            (TxKind::OpeningBalance, _) => ("ACMT-MCOP", "OTHR"),
            (TxKind::Supermarket | TxKind::Fuel | TxKind::Restaurant | TxKind::Subscription, _) => {
                ("PMNT-CCRD", "POSD")
            }
            (TxKind::Rent, Debit) => ("PMNT-ICDT", "STDO"),
            (TxKind::CardRepayment | TxKind::SavingsTransfer, _) => ("PMNT-ICDT", "BOOK"),
            (_, Credit) => ("PMNT-RCDT", "DMCT"),
            (_, Debit) => ("PMNT-ICDT", "DMCT"),
        }
    }

    /// Whether the merchant fields apply (card spends).
    pub fn is_card_spend(self) -> bool {
        matches!(
            self,
            TxKind::Supermarket | TxKind::Fuel | TxKind::Restaurant | TxKind::Subscription
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            TxKind::OpeningBalance => "Opening balance",
            TxKind::Salary => "Salary",
            TxKind::ForeignIncome => "Incoming transfer",
            TxKind::Rent => "Rent",
            TxKind::MobileMoneyOut => "M-Pesa transfer to",
            TxKind::MobileMoneyIn => "M-Pesa transfer from",
            TxKind::Supermarket | TxKind::Fuel | TxKind::Restaurant | TxKind::Subscription => {
                "Card purchase"
            }
            TxKind::Utilities => "Bill payment",
            TxKind::Airtime => "Airtime purchase",
            TxKind::CardRepayment => "Credit card repayment",
            TxKind::SavingsTransfer => "Transfer",
            TxKind::Interest => "Interest",
            TxKind::Fee => "Fee",
            TxKind::FxConversion => "Currency conversion",
            TxKind::Payment => "Payment",
        }
    }
}

/// The other side of a transaction, as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counterparty {
    pub name: Arc<str>,
    pub scheme: Arc<str>,
    pub identification: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub name: Arc<str>,
    /// ISO 18245 merchant category code.
    pub mcc: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub transaction_id: String,
    pub account_id: AccountId,
    /// Signed: positive is a credit, negative a debit.
    pub amount: Money,
    pub booking: OffsetDateTime,
    pub value: OffsetDateTime,
    pub kind: TxKind,
    pub description: String,
    pub reference: String,
    pub counterparty: Option<Counterparty>,
    pub merchant: Option<Merchant>,
    /// Booked balance of the account after this entry.
    pub running_balance: Money,
}

impl Transaction {
    pub fn direction(&self) -> Direction {
        if self.amount.minor >= 0 {
            Direction::Credit
        } else {
            Direction::Debit
        }
    }
}

/// A transaction listing request. Dates are inclusive booking date-times. Results are
/// newest first; `offset`/`limit` select the page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionQuery {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub direction: Option<Direction>,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionPage {
    pub items: Vec<Transaction>,
    /// Number of transactions matching the query across all pages.
    pub total: usize,
    /// Earliest and latest booking time held for the requested accounts (any filter).
    pub first_available: Option<OffsetDateTime>,
    pub last_available: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beneficiary {
    pub beneficiary_id: String,
    pub account_id: AccountId,
    pub reference: String,
    pub is_trusted: bool,
    pub creditor: AccountIdentification,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandingOrder {
    pub standing_order_id: String,
    pub account_id: AccountId,
    /// Day of the month the order runs.
    pub day_of_month: u8,
    pub reference: String,
    pub first_payment: Date,
    pub next_payment: Date,
    pub last_payment: Option<Date>,
    pub amount: Money,
    pub is_active: bool,
    pub creditor: AccountIdentification,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountRole {
    Owner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub party_id: String,
    pub party_number: String,
    pub name: String,
    pub full_legal_name: String,
    pub email: String,
    pub phone: String,
    pub address: Address,
    /// Set when the party is read through an account.
    pub account_role: Option<AccountRole>,
}
