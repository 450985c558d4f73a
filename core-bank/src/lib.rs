//! Wekeza's core-banking seam and its sandbox implementation.
//!
//! * [`CoreBank`] is the trait a real core system implements later: the read side the
//!   resource server needs (customers' accounts, balances, transactions with booking-date
//!   filters and pagination, beneficiaries, standing orders, parties).
//! * [`SandboxBank`] implements it in memory over a double-entry [`ledger::Ledger`]:
//!   every posting's legs sum to zero, balances are derived from the legs (cached as they
//!   are applied, verified against the ledger by [`Bank::verify`]).
//! * [`generator`] seeds a deterministic bank: named personas with a year of history, and
//!   any number of extra customers for benchmark-sized banks.
//!
//! No I/O: the crate depends on no runtime, network or storage library.

pub mod bank;
pub mod generator;
pub mod ledger;
pub mod model;
pub mod money;

pub use bank::{Bank, EAT, InternalAccount, MAX_PAGE, SandboxBank};
pub use generator::{GeneratorConfig, generate};
pub use model::*;
pub use money::{Currency, Money};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("unknown account {0}")]
    UnknownAccount(String),
    #[error("unknown customer {0}")]
    UnknownCustomer(String),
    #[error("unknown ledger account {0}")]
    UnknownLedgerAccount(u32),
    #[error("duplicate id {0}")]
    Duplicate(String),
    #[error("posting legs do not balance")]
    Unbalanced,
    #[error("invalid posting: {0}")]
    InvalidPosting(&'static str),
    #[error("amount overflow")]
    Overflow,
    #[error("core system unavailable: {0}")]
    Unavailable(String),
}

/// The read side of a core banking system, as the resource server uses it. Async because
/// a real core is reached over the network; the sandbox answers immediately.
///
/// Implementations return only what exists: authorization (which customer and which
/// accounts a caller may see) is the resource server's job, not the core's.
#[async_trait::async_trait]
pub trait CoreBank: Send + Sync {
    /// The customer an external subject (the authorization server's `sub`) belongs to.
    async fn customer_for_subject(&self, subject: &str) -> Result<Option<Customer>, CoreError>;
    /// Every account the customer holds, in a stable order.
    async fn accounts(&self, customer_id: &str) -> Result<Vec<Account>, CoreError>;
    async fn account(&self, account_id: &str) -> Result<Option<Account>, CoreError>;
    /// Booked and available balances. `Err(UnknownAccount)` for an unknown id.
    async fn balances(&self, account_id: &str) -> Result<Balances, CoreError>;
    /// Booked transactions of the given accounts matching `query`, newest first within
    /// an account, accounts in the order given.
    async fn transactions(
        &self,
        account_ids: &[AccountId],
        query: &TransactionQuery,
    ) -> Result<TransactionPage, CoreError>;
    async fn beneficiaries(&self, account_id: &str) -> Result<Vec<Beneficiary>, CoreError>;
    async fn standing_orders(&self, account_id: &str) -> Result<Vec<StandingOrder>, CoreError>;
    /// The customer as a party (the PSU).
    async fn party(&self, customer_id: &str) -> Result<Option<Party>, CoreError>;
    /// The parties that hold the account, with their roles.
    async fn account_parties(&self, account_id: &str) -> Result<Vec<Party>, CoreError>;
}
