//! Client authentication at PAR, token, introspection and revocation (FAPI 2.0
//! §5.3.2.1-6): `private_key_jwt` or `tls_client_auth`, chosen by what the client
//! registered, never by what the request claims. Shared secrets do not exist here.

use crate::http::PeerCert;
use crate::state::AppState;
use authz_core::assertion::{ASSERTION_TYPE, peek_client_id, verify_client_assertion};
use authz_core::client::{Client, ClientAuthMethod};
use authz_core::{OAuthError, OAuthResult};
use std::collections::HashMap;

pub async fn authenticate(
    st: &AppState,
    params: &HashMap<&str, &str>,
    cert: Option<&PeerCert>,
) -> OAuthResult<Client> {
    let client = authenticate_client(st, params, cert).await?;
    // The client is known: its plan's rate limits and quota apply (ADR 0015).
    crate::gateway::admit_oauth(&client.client_id).await?;
    Ok(client)
}

async fn authenticate_client(
    st: &AppState,
    params: &HashMap<&str, &str>,
    cert: Option<&PeerCert>,
) -> OAuthResult<Client> {
    let assertion_type = params.get("client_assertion_type").copied();
    let assertion = params.get("client_assertion").copied();
    let claimed_id = params.get("client_id").copied();
    if params.contains_key("client_secret") {
        return Err(OAuthError::invalid_client(
            "client secrets are not accepted; use private_key_jwt or tls_client_auth",
        ));
    }
    match (assertion_type, assertion) {
        (Some(t), Some(a)) => {
            if t != ASSERTION_TYPE {
                return Err(OAuthError::invalid_client(
                    "unsupported client_assertion_type",
                ));
            }
            let now = st.clock.now();
            let (u, id) = peek_client_id(a)?;
            if claimed_id.is_some_and(|c| c != id) {
                return Err(OAuthError::invalid_client(
                    "client_id does not match the client_assertion",
                ));
            }
            let client = load(st, &id).await?;
            let valid = verify_client_assertion(&u, &client, &st.issuer, now)?;
            // Replay check (RFC 7523 §3 item 7): one use of each jti per client until exp.
            let key =
                fapi_jose::sha256_b64(format!("{}\u{0}{}", valid.client_id, valid.jti).as_bytes());
            if !st
                .eph
                .insert_if_absent("jti", &key, "1", valid.exp, now)
                .await
                .map_err(store)?
            {
                return Err(OAuthError::invalid_client(
                    "client_assertion jti has already been used",
                ));
            }
            Ok(client)
        }
        (None, None) => {
            let id = claimed_id
                .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
            let client = load(st, id).await?;
            if client.token_endpoint_auth_method != ClientAuthMethod::TlsClientAuth {
                return Err(OAuthError::invalid_client(
                    "client must authenticate with private_key_jwt",
                ));
            }
            let cert = cert.ok_or_else(|| {
                OAuthError::invalid_client("tls_client_auth requires a client certificate")
            })?;
            if !cert_matches(&client, &cert.der) {
                return Err(OAuthError::invalid_client(
                    "client certificate does not match the registered subject",
                ));
            }
            Ok(client)
        }
        _ => Err(OAuthError::invalid_client(
            "client_assertion and client_assertion_type must be sent together",
        )),
    }
}

async fn load(st: &AppState, id: &str) -> OAuthResult<Client> {
    find_client(st, id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))
}

/// A registered client, through the short-lived in-process cache.
pub async fn find_client(st: &AppState, id: &str) -> OAuthResult<Option<Client>> {
    let now = st.clock.now();
    if let Some(c) = st.client_cache.get(id, now) {
        return Ok(Some((*c).clone()));
    }
    match st.store.find_client(id).await.map_err(store)? {
        None => Ok(None),
        Some(rec) => {
            let client: Client = serde_json::from_value(rec.metadata)
                .map_err(|e| OAuthError::server_error(format!("client {id} metadata: {e}")))?;
            st.client_cache
                .put(std::sync::Arc::new(client.clone()), now);
            Ok(Some(client))
        }
    }
}

/// RFC 8705 §2.1.2: compare the registered subject DN (string form) or SAN dNSName.
pub(crate) fn cert_matches(client: &Client, der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    if let Some(dn) = &client.tls_client_auth_subject_dn {
        return normalize_dn(&cert.subject().to_string()) == normalize_dn(dn);
    }
    if let Some(want) = &client.tls_client_auth_san_dns
        && let Ok(Some(san)) = cert.subject_alternative_name()
    {
        return san.value.general_names.iter().any(|n| matches!(n, x509_parser::extensions::GeneralName::DNSName(d) if d.eq_ignore_ascii_case(want)));
    }
    false
}

/// RFC 4514 strings compared after trimming blanks around separators and case-folding
/// attribute names; values stay case-sensitive.
fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| match rdn.split_once('=') {
            Some((k, v)) => format!("{}={}", k.trim().to_ascii_uppercase(), v.trim()),
            None => rdn.trim().to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn store(e: authz_store::StoreError) -> OAuthError {
    OAuthError::server_error(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::normalize_dn;

    #[test]
    fn dn_normalisation() {
        assert_eq!(normalize_dn("CN=tpp, O=Org"), normalize_dn("cn=tpp,o=Org"));
        assert_ne!(normalize_dn("CN=tpp, O=Org"), normalize_dn("CN=tpp, O=org"));
    }
}
