//! Redirect URIs: registration rules (FAPI 2.0 §5.3.2.2-8, RFC 8252 §7.3) and the exact
//! match at PAR. A [`VerifiedRedirectUri`] can only be made here, so only a verified URI
//! can ever receive an error redirect (no open redirector, §5.3.2.1-7).

use crate::error::{OAuthError, OAuthResult};
use url::Url;

pub fn validate_registered_redirect_uri(uri: &str) -> OAuthResult<Url> {
    let url = Url::parse(uri)
        .map_err(|_| OAuthError::invalid_request("redirect_uri is not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(OAuthError::invalid_request(
            "redirect_uri must not contain a fragment",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if matches!(url.host_str(), Some("127.0.0.1") | Some("[::1]")) => Ok(url),
        _ => Err(OAuthError::invalid_request(
            "redirect_uri must use https (http only for loopback IP literals)",
        )),
    }
}

/// A redirect URI that exactly matches one the client registered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifiedRedirectUri(String);

impl VerifiedRedirectUri {
    /// Simple string comparison, as RFC 9700 §4.1.3 asks for.
    pub fn verify(requested: &str, registered: &[String]) -> OAuthResult<Self> {
        if registered.iter().any(|r| r == requested) {
            Ok(Self(requested.to_owned()))
        } else {
            Err(OAuthError::invalid_request(
                "redirect_uri does not match a registered redirect URI",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI with `params` appended to its query (RFC 6749 §4.1.2).
    pub fn with_params(&self, params: &[(&str, &str)]) -> String {
        match Url::parse(&self.0) {
            Ok(mut u) => {
                {
                    let mut q = u.query_pairs_mut();
                    for (k, v) in params {
                        q.append_pair(k, v);
                    }
                }
                u.to_string()
            }
            Err(_) => self.0.clone(),
        }
    }

    pub fn host(&self) -> String {
        Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn origin(&self) -> String {
        Url::parse(&self.0)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registration_rules() {
        assert!(validate_registered_redirect_uri("https://tpp.example/cb").is_ok());
        assert!(validate_registered_redirect_uri("http://127.0.0.1:8080/cb").is_ok());
        assert!(validate_registered_redirect_uri("http://tpp.example/cb").is_err());
        assert!(validate_registered_redirect_uri("http://localhost/cb").is_err());
        assert!(validate_registered_redirect_uri("https://tpp.example/cb#x").is_err());
        assert!(validate_registered_redirect_uri("/cb").is_err());
    }

    #[test]
    fn exact_match_only() {
        let reg = vec!["https://tpp.example/cb".to_owned()];
        assert!(VerifiedRedirectUri::verify("https://tpp.example/cb", &reg).is_ok());
        assert!(VerifiedRedirectUri::verify("https://tpp.example/cb/", &reg).is_err());
        assert!(VerifiedRedirectUri::verify("https://tpp.example/cb?x=1", &reg).is_err());
        assert!(VerifiedRedirectUri::verify("https://TPP.example/cb", &reg).is_err());
        let v = VerifiedRedirectUri::verify("https://tpp.example/cb", &reg).unwrap();
        assert_eq!(
            v.with_params(&[("code", "a b"), ("state", "s")]),
            "https://tpp.example/cb?code=a+b&state=s"
        );
    }
}
