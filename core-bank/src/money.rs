//! Money as integer minor units with a currency. Never floating point.

use serde::{Deserialize, Serialize};
use std::fmt;

/// ISO 4217 currencies the sandbox holds. All of them have two minor digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Currency {
    KES,
    USD,
    EUR,
    GBP,
}

impl Currency {
    pub const ALL: [Currency; 4] = [Currency::KES, Currency::USD, Currency::EUR, Currency::GBP];

    pub fn code(self) -> &'static str {
        match self {
            Currency::KES => "KES",
            Currency::USD => "USD",
            Currency::EUR => "EUR",
            Currency::GBP => "GBP",
        }
    }

    /// Number of minor-unit digits (ISO 4217 exponent).
    pub fn minor_digits(self) -> u32 {
        2
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount in minor units (cents) of a currency. Positive means money in, from the
/// account holder's point of view (a credit); negative means money out (a debit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub const fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    pub fn is_credit(&self) -> bool {
        self.minor >= 0
    }

    /// The absolute amount as a decimal string with the currency's minor digits
    /// (`"1234.50"`), the form UK Open Banking's `Amount` uses alongside a separate
    /// `CreditDebitIndicator`.
    pub fn abs_decimal(&self) -> String {
        let digits = self.currency.minor_digits();
        let scale = 10u64.pow(digits);
        let abs = self.minor.unsigned_abs();
        format!(
            "{}.{:0width$}",
            abs / scale,
            abs % scale,
            width = digits as usize
        )
    }

    /// Signed decimal string (`"-12.00"`).
    pub fn decimal(&self) -> String {
        if self.minor < 0 {
            format!("-{}", self.abs_decimal())
        } else {
            self.abs_decimal()
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.currency, self.decimal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_formatting_is_exact() {
        assert_eq!(Money::new(123450, Currency::KES).abs_decimal(), "1234.50");
        assert_eq!(Money::new(-5, Currency::USD).decimal(), "-0.05");
        assert_eq!(Money::new(0, Currency::GBP).decimal(), "0.00");
        assert_eq!(
            Money::new(i64::MIN, Currency::EUR).abs_decimal(),
            "92233720368547758.08"
        );
        assert_eq!(Currency::parse("EUR"), Some(Currency::EUR));
        assert_eq!(Currency::parse("eur"), None);
    }
}
