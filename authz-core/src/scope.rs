//! RFC 6749 §3.3 scope: space-delimited, case-sensitive, NQCHAR tokens.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(BTreeSet<String>);

/// The scope string is not a valid RFC 6749 §3.3 scope list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedScope;

impl Scope {
    pub fn parse(s: &str) -> Result<Self, MalformedScope> {
        let mut set = BTreeSet::new();
        for tok in s.split(' ').filter(|t| !t.is_empty()) {
            // NQCHAR = %x21 / %x23-5B / %x5D-7E
            if tok.len() > 128
                || !tok
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                return Err(MalformedScope);
            }
            set.insert(tok.to_owned());
        }
        if set.len() > 64 {
            return Err(MalformedScope);
        }
        Ok(Self(set))
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn without(&self, s: &str) -> Scope {
        Scope(self.0.iter().filter(|x| *x != s).cloned().collect())
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v: Vec<&str> = self.iter().collect();
        f.write_str(&v.join(" "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let s = Scope::parse("openid  accounts").unwrap();
        assert!(s.contains("openid") && s.contains("accounts"));
        assert_eq!(s.to_string(), "accounts openid");
        assert!(Scope::parse("a\"b").is_err());
        assert!(Scope::parse("a\\b").is_err());
        assert!(Scope::parse("é").is_err());
        assert!(Scope::parse("openid").unwrap().is_subset(&s));
    }
}
