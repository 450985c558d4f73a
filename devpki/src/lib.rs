//! Development PKI: a throw-away certificate authority, TLS server certificates for
//! `localhost`, and TPP client certificates for mTLS (RFC 8705).
//!
//! Sandbox material only: the platform generates it at first start in sandbox mode, and
//! the tests generate fresh material per run. Nothing here is used in production mode.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

impl Issued {
    /// RFC 8705 `x5t#S256` of this certificate.
    pub fn x5t_s256(&self) -> String {
        fapi_jose::x5t_s256(&self.cert_der)
    }
}

/// A development certificate authority.
pub struct DevCa {
    issued: Issued,
    issuer: Issuer<'static, KeyPair>,
}

impl DevCa {
    /// A new CA valid for ten years.
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name = dn(common_name, "Wekeza Sandbox PKI");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        };
        let issuer = Issuer::new(params, key);
        Ok(Self { issued, issuer })
    }

    /// Reload a CA written earlier by [`DevCa::generate`].
    pub fn load(cert_pem: &str, key_pem: &str) -> anyhow::Result<Self> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let der = rustls_pki_der(cert_pem)?;
        Ok(Self {
            issued: Issued {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
                cert_der: der,
            },
            issuer,
        })
    }

    pub fn cert(&self) -> &Issued {
        &self.issued
    }

    /// A TLS server certificate for the given DNS names (IP literals become IP SANs).
    pub fn issue_server(&self, names: &[&str]) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name =
            dn(names.first().copied().unwrap_or("localhost"), "Wekeza Bank");
        for n in names {
            params
                .subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*n).try_into()?),
                });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, 825)
    }

    /// A TPP client certificate. The subject is `CN=<common_name>, O=<organization>`; the
    /// client id also goes in a SAN DNS name so `tls_client_auth_san_dns` can match it.
    pub fn issue_client(
        &self,
        common_name: &str,
        organization: &str,
        san_dns: Option<&str>,
    ) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(common_name, organization);
        if let Some(d) = san_dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(d.try_into()?));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, 825)
    }

    /// A TPP client certificate for the key of a PKCS#10 request (its signature checked,
    /// so the requester holds the key). Only the public key is taken from the request:
    /// subject, extensions and validity are ours, as for [`Self::issue_client`]. Returns
    /// the certificate as PEM and DER; the private key never comes here.
    pub fn sign_client_csr(
        &self,
        csr_pem: &str,
        common_name: &str,
        organization: &str,
    ) -> anyhow::Result<(String, Vec<u8>)> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| anyhow::anyhow!("certificate signing request: {e}"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(common_name, organization);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(825);
        let req = rcgen::CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = req.signed_by(&self.issuer)?;
        Ok((cert.pem(), cert.der().to_vec()))
    }

    fn sign(&self, mut params: CertificateParams, days: i64) -> anyhow::Result<Issued> {
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(days);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        })
    }
}

fn dn(common_name: &str, organization: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, organization);
    dn
}

fn rustls_pki_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("CA certificate PEM: {e}"))?;
    Ok(parsed.contents)
}

/// The RFC 4514 string form of a certificate's subject, as `tls_client_auth_subject_dn`
/// is compared (x509-parser's rendering, e.g. `CN=tpp, O=Org`).
pub fn subject_dn(cert_der: &[u8]) -> anyhow::Result<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
    Ok(cert.subject().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn ca_issues_and_reloads() {
        let ca = DevCa::generate("Test CA").unwrap();
        let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
        assert!(server.cert_pem.contains("BEGIN CERTIFICATE"));
        let client = ca
            .issue_client(
                "tpp-one",
                "Sandbox TPP One",
                Some("tpp-one.sandbox.wekeza.test"),
            )
            .unwrap();
        assert_eq!(
            subject_dn(&client.cert_der).unwrap(),
            "CN=tpp-one, O=Sandbox TPP One"
        );
        let again = DevCa::load(&ca.cert().cert_pem, &ca.cert().key_pem).unwrap();
        assert_eq!(again.cert().cert_der, ca.cert().cert_der);
        let other = again.issue_client("x", "y", None).unwrap();
        assert_ne!(other.x5t_s256(), client.x5t_s256());
    }
}
