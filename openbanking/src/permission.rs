//! UK Open Banking account-access permissions (Read/Write API v4,
//! `OBInternalPermissions1Code`), the subset this platform serves, with the plain words
//! the consent page shows.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    ReadAccountsBasic,
    ReadAccountsDetail,
    ReadBalances,
    ReadBeneficiariesBasic,
    ReadBeneficiariesDetail,
    ReadTransactionsBasic,
    ReadTransactionsDetail,
    ReadTransactionsCredits,
    ReadTransactionsDebits,
    ReadStandingOrdersBasic,
    ReadStandingOrdersDetail,
    ReadParty,
    ReadPartyPSU,
}

impl Permission {
    pub const ALL: [Permission; 13] = [
        Permission::ReadAccountsBasic,
        Permission::ReadAccountsDetail,
        Permission::ReadBalances,
        Permission::ReadBeneficiariesBasic,
        Permission::ReadBeneficiariesDetail,
        Permission::ReadTransactionsBasic,
        Permission::ReadTransactionsDetail,
        Permission::ReadTransactionsCredits,
        Permission::ReadTransactionsDebits,
        Permission::ReadStandingOrdersBasic,
        Permission::ReadStandingOrdersDetail,
        Permission::ReadParty,
        Permission::ReadPartyPSU,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadAccountsBasic => "ReadAccountsBasic",
            Permission::ReadAccountsDetail => "ReadAccountsDetail",
            Permission::ReadBalances => "ReadBalances",
            Permission::ReadBeneficiariesBasic => "ReadBeneficiariesBasic",
            Permission::ReadBeneficiariesDetail => "ReadBeneficiariesDetail",
            Permission::ReadTransactionsBasic => "ReadTransactionsBasic",
            Permission::ReadTransactionsDetail => "ReadTransactionsDetail",
            Permission::ReadTransactionsCredits => "ReadTransactionsCredits",
            Permission::ReadTransactionsDebits => "ReadTransactionsDebits",
            Permission::ReadStandingOrdersBasic => "ReadStandingOrdersBasic",
            Permission::ReadStandingOrdersDetail => "ReadStandingOrdersDetail",
            Permission::ReadParty => "ReadParty",
            Permission::ReadPartyPSU => "ReadPartyPSU",
        }
    }

    /// The heading the consent page groups this permission under.
    pub fn group(self) -> &'static str {
        use Permission::*;
        match self {
            ReadAccountsBasic | ReadAccountsDetail => "Your accounts",
            ReadBalances => "Balances",
            ReadTransactionsBasic
            | ReadTransactionsDetail
            | ReadTransactionsCredits
            | ReadTransactionsDebits => "Transactions",
            ReadBeneficiariesBasic
            | ReadBeneficiariesDetail
            | ReadStandingOrdersBasic
            | ReadStandingOrdersDetail => "Payees and regular payments",
            ReadParty | ReadPartyPSU => "About you",
        }
    }

    /// What the permission lets the TPP see, in words a customer understands.
    pub fn describe(self) -> &'static str {
        use Permission::*;
        match self {
            ReadAccountsBasic => "The names, types and currencies of the accounts you pick",
            ReadAccountsDetail => "The account numbers and sort codes of the accounts you pick",
            ReadBalances => "The balances of the accounts you pick",
            ReadTransactionsBasic => "Dates, amounts and status of your transactions",
            ReadTransactionsDetail => {
                "Full transaction details: descriptions, references, payees and merchants"
            }
            ReadTransactionsCredits => "Money coming into your accounts",
            ReadTransactionsDebits => "Money going out of your accounts",
            ReadBeneficiariesBasic => "The names of people and businesses you have saved as payees",
            ReadBeneficiariesDetail => "Your saved payees with their account details",
            ReadStandingOrdersBasic => "Your standing orders (how much, how often)",
            ReadStandingOrdersDetail => "Your standing orders with the payees' account details",
            ReadParty => "The name and contact details of the holders of the accounts you pick",
            ReadPartyPSU => "Your own name and contact details",
        }
    }
}

impl FromStr for Permission {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|()| serde::de::Error::custom(format!("unknown permission {s}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
            assert!(!p.describe().is_empty());
        }
        assert!("readbalances".parse::<Permission>().is_err());
        assert!("ReadPAN".parse::<Permission>().is_err());
    }
}
