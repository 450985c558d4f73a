//! A FAPI 2.0 client (TPP): discovery, `private_key_jwt` or `tls_client_auth`, PAR with
//! PKCE, the token endpoint, and calls with its certificate-bound tokens.

use crate::kit::{Kit, KitClient};
use anyhow::Context;
use fapi_jose::SigningKey;
use reqwest::{Certificate, Identity, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn random(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    fapi_jose::b64(&v)
}

/// RFC 7636 verifier and its S256 challenge.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = random(32);
        let challenge = fapi_jose::sha256_b64(verifier.as_bytes());
        Self {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// Reply of an endpoint: status, headers, JSON body (or `Value::Null`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.body
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or("")
    }
    pub fn str(&self, k: &str) -> Option<&str> {
        self.body.get(k).and_then(|v| v.as_str())
    }
}

#[derive(Clone)]
pub enum Auth {
    PrivateKeyJwt(Arc<SigningKey>),
    TlsClientAuth,
}

#[derive(Clone)]
pub struct Tpp {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub auth: Auth,
    pub issuer: String,
    pub discovery: Value,
    /// HTTPS client presenting this TPP's certificate.
    pub http: reqwest::Client,
    /// HTTPS client with no certificate (for negative tests).
    pub http_no_cert: reqwest::Client,
    /// SHA-256 thumbprint of this TPP's certificate.
    pub x5t_s256: String,
}

pub fn https_client(ca_pem: &[u8], identity_pem: Option<&[u8]>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([Certificate::from_pem(ca_pem)?])
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64);
    if let Some(id) = identity_pem {
        b = b.identity(Identity::from_pem(id)?);
    }
    Ok(b.build()?)
}

impl Tpp {
    /// A TPP from a kit client entry: loads its certificate, key and (for
    /// `private_key_jwt`) its signing JWK, then reads discovery.
    pub async fn from_kit(kit: &Kit, c: &KitClient) -> anyhow::Result<Self> {
        let ca = std::fs::read(&kit.ca_cert)
            .with_context(|| format!("reading {}", kit.ca_cert.display()))?;
        let cert = std::fs::read(&c.cert)?;
        let mut identity = cert.clone();
        identity.extend(std::fs::read(&c.key)?);
        let auth = match c.token_endpoint_auth_method.as_str() {
            "private_key_jwt" => {
                let p = c
                    .private_jwk
                    .as_ref()
                    .context("private_key_jwt client without private_jwk")?;
                let jwk: Value = serde_json::from_slice(&std::fs::read(p)?)?;
                Auth::PrivateKeyJwt(Arc::new(
                    SigningKey::from_private_jwk(&jwk).map_err(|e| anyhow::anyhow!("{e}"))?,
                ))
            }
            "tls_client_auth" => Auth::TlsClientAuth,
            m => anyhow::bail!("unsupported auth method {m}"),
        };
        let http = https_client(&ca, Some(&identity))?;
        let http_no_cert = https_client(&ca, None)?;
        let discovery: Value = http_no_cert
            .get(format!("{}/.well-known/openid-configuration", kit.issuer))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let der = rustls_pem_first_cert(&cert)?;
        Ok(Self {
            client_id: c.client_id.clone(),
            redirect_uri: c.redirect_uri.clone(),
            scope: c.scope.clone(),
            auth,
            issuer: kit.issuer.clone(),
            discovery,
            http,
            http_no_cert,
            x5t_s256: fapi_jose::x5t_s256(&der),
        })
    }

    /// An endpoint URL, preferring `mtls_endpoint_aliases` (RFC 8705 §5).
    pub fn endpoint(&self, name: &str) -> String {
        self.discovery
            .get("mtls_endpoint_aliases")
            .and_then(|a| a.get(name))
            .or_else(|| self.discovery.get(name))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    }

    /// A fresh client assertion with the given claims overridden (`null` removes one).
    pub fn assertion_with(&self, overrides: Value) -> String {
        let Auth::PrivateKeyJwt(key) = &self.auth else {
            return String::new();
        };
        let t = now();
        let mut claims = json!({"iss": self.client_id, "sub": self.client_id, "aud": self.issuer, "jti": random(16), "iat": t, "exp": t + 60});
        if let (Some(c), Some(o)) = (claims.as_object_mut(), overrides.as_object()) {
            for (k, v) in o {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        key.sign_jwt(None, &claims).unwrap_or_default()
    }

    /// Client authentication parameters for one request.
    pub fn auth_params(&self) -> Vec<(String, String)> {
        match &self.auth {
            Auth::PrivateKeyJwt(_) => vec![
                ("client_id".into(), self.client_id.clone()),
                ("client_assertion_type".into(), ASSERTION_TYPE.into()),
                ("client_assertion".into(), self.assertion_with(json!({}))),
            ],
            Auth::TlsClientAuth => vec![("client_id".into(), self.client_id.clone())],
        }
    }

    pub async fn post_form(
        &self,
        url: &str,
        form: &[(String, String)],
        with_cert: bool,
    ) -> anyhow::Result<Reply> {
        let http = if with_cert {
            &self.http
        } else {
            &self.http_no_cert
        };
        let body = serde_urlencoded(form);
        let r = http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await?;
        reply(r).await
    }

    /// Form with this client's authentication plus `params`.
    pub fn form(&self, params: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut f = self.auth_params();
        f.extend(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        f
    }

    /// A standard pushed authorization request; `extra` entries override or add
    /// (an empty value removes a parameter).
    pub fn par_form(
        &self,
        pkce: &Pkce,
        state: &str,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut base: Vec<(String, String)> = [
            ("response_type", "code"),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("scope", self.scope.as_str()),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", state),
            ("nonce", nonce),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            base.retain(|(n, _)| n != k);
            if !v.is_empty() {
                base.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        let mut f = self.auth_params();
        f.extend(base);
        f
    }

    pub async fn par(
        &self,
        pkce: &Pkce,
        state: &str,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let url = self.endpoint("pushed_authorization_request_endpoint");
        self.post_form(&url, &self.par_form(pkce, state, nonce, extra), true)
            .await
    }

    /// The authorization URL: only `client_id` and `request_uri` (FAPI 2.0 §5.3.3.2-6).
    pub fn authorize_url(&self, request_uri: &str) -> String {
        let ep = self
            .discovery
            .get("authorization_endpoint")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        format!(
            "{ep}?client_id={}&request_uri={}",
            enc(&self.client_id),
            enc(request_uri)
        )
    }

    pub async fn token(&self, params: &[(&str, &str)]) -> anyhow::Result<Reply> {
        self.post_form(&self.endpoint("token_endpoint"), &self.form(params), true)
            .await
    }

    pub async fn exchange_code(&self, code: &str, pkce: &Pkce) -> anyhow::Result<Reply> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", &pkce.verifier),
        ])
        .await
    }

    pub async fn client_credentials(&self, scope: &str) -> anyhow::Result<Reply> {
        self.token(&[("grant_type", "client_credentials"), ("scope", scope)])
            .await
    }

    /// GET with a bearer token over this TPP's (or no) certificate.
    pub async fn get_with_token(
        &self,
        url: &str,
        token: &str,
        with_cert: bool,
    ) -> anyhow::Result<Reply> {
        let http = if with_cert {
            &self.http
        } else {
            &self.http_no_cert
        };
        reply(
            http.get(url)
                .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"))
                .send()
                .await?,
        )
        .await
    }
}

async fn reply(r: reqwest::Response) -> anyhow::Result<Reply> {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn serde_urlencoded(form: &[(String, String)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn rustls_pem_first_cert(pem: &[u8]) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let c = CertificateDer::pem_slice_iter(pem)
        .next()
        .context("no certificate in PEM")??;
    Ok(c.as_ref().to_vec())
}

/// Decode a JWT's claims without verifying (tests inspect what they received).
pub fn jwt_claims(token: &str) -> Value {
    fapi_jose::Unverified::parse(token)
        .map(|u| u.claims)
        .unwrap_or(Value::Null)
}
