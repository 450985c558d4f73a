//! A FAPI 2.0 client (TPP): discovery, `private_key_jwt` or `tls_client_auth`, PAR with
//! PKCE, the token endpoint, and calls with its certificate-bound or DPoP-bound tokens
//! (RFC 9449: proofs, `ath`, server nonces). Message Signing: signed request objects
//! (RFC 9101) at PAR and JWT-secured authorization responses (JARM).

use crate::kit::{Kit, KitClient};
use anyhow::Context;
use fapi_jose::{Alg, SigningKey};
use reqwest::{Certificate, Identity, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
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

/// Unix seconds as a TPP sees them (tests point it at the server's clock).
pub type ClockFn = Arc<dyn Fn() -> i64 + Send + Sync>;

/// RFC 9449 §4.2 proof `typ`.
pub const DPOP_TYP: &str = "dpop+jwt";

/// Sign a DPoP proof with `key`: a header of `typ`, `alg` and the public `jwk`, then
/// `header` entries on top (`null` removes one), and `claims` as given.
pub fn sign_dpop_proof(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let mut h = serde_json::Map::new();
    h.insert("typ".into(), json!(DPOP_TYP));
    h.insert(
        "jwk".into(),
        serde_json::to_value(key.public_jwk()).unwrap_or_default(),
    );
    if let Some(o) = header.as_object() {
        for (k, v) in o {
            if v.is_null() {
                h.remove(k);
            } else {
                h.insert(k.clone(), v.clone());
            }
        }
    }
    key.sign_with_header(&h, claims).unwrap_or_default()
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
    /// The DPoP key of a client with DPoP-bound tokens: a fresh ES256 key per TPP.
    pub dpop: Option<Arc<SigningKey>>,
    /// The last `DPoP-Nonce` a server sent (RFC 9449 §8), used in the next proofs.
    pub dpop_nonce: Arc<Mutex<Option<String>>>,
    /// Clock for the `iat`/`exp` of the JWTs this TPP signs (real time unless a test
    /// points it at the server's clock).
    pub clock: ClockFn,
    /// The key request bodies are signed with (`x-jws-signature`, UK OB): one registered
    /// in the client's `jwks`. `None`: requests go unsigned.
    pub signer: Option<Arc<SigningKey>>,
    /// `http://openbanking.org.uk/tan` of those signatures.
    pub jws_trust_anchor: String,
    /// Clock for the signatures' `http://openbanking.org.uk/iat` (tests point it at the
    /// server's clock without changing how the TPP authenticates).
    pub jws_clock: ClockFn,
}

/// The sandbox trust anchor, for kits that do not name one.
pub const DEFAULT_TRUST_ANCHOR: &str = "directory.sandbox.wekeza.test";

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
        let signer = match c.signing_jwk.as_ref().or(c.private_jwk.as_ref()) {
            None => None,
            Some(p) => {
                let jwk: Value = serde_json::from_slice(&std::fs::read(p)?)?;
                Some(Arc::new(
                    SigningKey::from_private_jwk(&jwk).map_err(|e| anyhow::anyhow!("{e}"))?,
                ))
            }
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
        let dpop = if c.uses_dpop() {
            Some(Arc::new(
                SigningKey::generate(Alg::ES256, format!("{}-dpop", c.client_id))
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            ))
        } else {
            None
        };
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
            dpop,
            dpop_nonce: Arc::new(Mutex::new(None)),
            clock: Arc::new(now),
            signer,
            jws_trust_anchor: kit
                .jws_trust_anchor
                .clone()
                .unwrap_or_else(|| DEFAULT_TRUST_ANCHOR.to_owned()),
            jws_clock: Arc::new(now),
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
        let t = (self.clock)();
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

    /// Request object claims (RFC 9101, FAPI 2.0 MS §5.3.1): `iss`, `client_id`, `aud`,
    /// `nbf`, `exp` (5 minutes), `jti`, then `params`, then `overrides` (`null` removes).
    pub fn request_object_claims(&self, params: &[(String, String)], overrides: Value) -> Value {
        let t = (self.clock)();
        let mut claims = json!({"iss": self.client_id, "client_id": self.client_id,
            "aud": self.issuer, "nbf": t, "exp": t + 300, "jti": random(16)});
        if let Some(c) = claims.as_object_mut() {
            for (k, v) in params {
                c.insert(k.clone(), Value::String(v.clone()));
            }
            if let Some(o) = overrides.as_object() {
                for (k, v) in o {
                    if v.is_null() {
                        c.remove(k);
                    } else {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        claims
    }

    /// A request object signed with this client's key, `typ` `oauth-authz-req+jwt`.
    pub fn request_object(&self, params: &[(String, String)], overrides: Value) -> String {
        let Auth::PrivateKeyJwt(key) = &self.auth else {
            return String::new();
        };
        key.sign_jwt(
            Some("oauth-authz-req+jwt"),
            &self.request_object_claims(params, overrides),
        )
        .unwrap_or_default()
    }

    /// The authorization parameters of a standard request (no client authentication),
    /// for a request object; `extra` works as in [`Tpp::par_form`].
    pub fn authz_params(
        &self,
        pkce: &Pkce,
        state: &str,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let auth: Vec<String> = self.auth_params().into_iter().map(|(k, _)| k).collect();
        self.par_form(pkce, state, nonce, extra)
            .into_iter()
            .filter(|(k, _)| !auth.contains(k))
            .collect()
    }

    /// PAR carrying a request object: client authentication, `client_id`, `request`,
    /// plus `outside` (ignored by the server).
    pub async fn par_signed(
        &self,
        request_object: &str,
        outside: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut f = self.auth_params();
        if !f.iter().any(|(k, _)| k == "client_id") {
            f.push(("client_id".into(), self.client_id.clone()));
        }
        f.push(("request".into(), request_object.to_owned()));
        f.extend(
            outside
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let url = self.endpoint("pushed_authorization_request_endpoint");
        self.post_form(&url, &f, true).await
    }

    /// The server's published keys (`jwks_uri`).
    pub async fn server_jwks(&self) -> anyhow::Result<Vec<fapi_jose::Jwk>> {
        let uri = self
            .discovery
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .context("no jwks_uri")?;
        let set: fapi_jose::Jwks = self
            .http_no_cert
            .get(uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(set.keys)
    }

    /// Verify a JWT signed by the server: signature against its JWKS, `iss` the issuer,
    /// `aud` this client (when `check_aud`), not expired. Returns the claims.
    pub async fn verify_server_jwt(&self, jwt: &str, check_aud: bool) -> anyhow::Result<Value> {
        let u = fapi_jose::Unverified::parse(jwt).map_err(|e| anyhow::anyhow!("{e}"))?;
        let keys = self.server_jwks().await?;
        u.verify_with_set(&keys)
            .map_err(|e| anyhow::anyhow!("server JWT signature: {e}"))?;
        let c = u.claims.clone();
        anyhow::ensure!(c["iss"] == self.issuer.as_str(), "iss is not the issuer");
        if check_aud {
            anyhow::ensure!(
                c["aud"] == self.client_id.as_str(),
                "aud is not this client"
            );
        }
        if let Some(exp) = c.get("exp").and_then(Value::as_i64) {
            anyhow::ensure!(exp > (self.clock)(), "expired");
        }
        Ok(c)
    }

    /// JARM (FAPI 2.0 MS §5.4.1): the verified claims of the `response` JWT in an
    /// authorization response redirect. Fails if the redirect is not a JARM response.
    pub async fn jarm_response(&self, redirect: &url::Url) -> anyhow::Result<Value> {
        let jwt = redirect
            .query_pairs()
            .find(|(k, _)| k == "response")
            .map(|(_, v)| v.into_owned())
            .context("no response parameter in the redirect")?;
        let c = self.verify_server_jwt(&jwt, true).await?;
        anyhow::ensure!(c.get("exp").is_some(), "JARM response has no exp");
        Ok(c)
    }

    /// Introspection asking for a signed response (RFC 9701 §4): status, `Content-Type`
    /// and the raw body.
    pub async fn introspect_jwt(
        &self,
        token: &str,
    ) -> anyhow::Result<(StatusCode, Option<String>, String)> {
        let form = self.form(&[("token", token)]);
        let r = self
            .http
            .post(self.endpoint("introspection_endpoint"))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(
                reqwest::header::ACCEPT,
                "application/token-introspection+jwt",
            )
            .body(serde_urlencoded(&form))
            .send()
            .await?;
        let status = r.status();
        let ct = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((status, ct, r.text().await?))
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

    /// A resource-server call the way this TPP's tokens are bound: `Bearer` over its
    /// certificate, or `DPoP` with a fresh proof (no certificate). `body` is sent as JSON.
    pub async fn resource(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let (http, scheme) = if self.uses_dpop() {
            (&self.http_no_cert, "DPoP")
        } else {
            (&self.http, "Bearer")
        };
        let mut req = http
            .request(method.clone(), url)
            .header(reqwest::header::AUTHORIZATION, format!("{scheme} {token}"))
            .header(reqwest::header::ACCEPT, "application/json")
            .header("x-fapi-interaction-id", uuid_like());
        if self.uses_dpop() {
            let htu = url.split('?').next().unwrap_or(url);
            req = req.header(
                "DPoP",
                self.dpop_proof(method.as_str(), htu, Some(token), None),
            );
        }
        if let Some(b) = body {
            let b = b.to_string();
            if let Some(sig) = self.jws_signature(b.as_bytes()) {
                req = req.header("x-jws-signature", sig);
            }
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        reply(req.send().await?).await
    }

    /// A resource-server call as [`Tpp::resource`] makes it, with these extra headers
    /// (instead of a random `x-fapi-interaction-id`) and, for DPoP clients, the client
    /// certificate as well when `cert_with_dpop` (profiles that use mTLS everywhere).
    pub async fn resource_with_headers(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        cert_with_dpop: bool,
    ) -> anyhow::Result<Reply> {
        let (http, scheme) = match (self.uses_dpop(), cert_with_dpop) {
            (true, false) => (&self.http_no_cert, "DPoP"),
            (true, true) => (&self.http, "DPoP"),
            (false, _) => (&self.http, "Bearer"),
        };
        let mut req = http
            .request(method.clone(), url)
            .header(reqwest::header::AUTHORIZATION, format!("{scheme} {token}"))
            .header(reqwest::header::ACCEPT, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if self.uses_dpop() {
            let htu = url.split('?').next().unwrap_or(url);
            req = req.header(
                "DPoP",
                self.dpop_proof(
                    method.as_str(),
                    htu,
                    Some(token),
                    self.current_dpop_nonce().as_deref(),
                ),
            );
        }
        if let Some(b) = body {
            let b = b.to_string();
            let caller_signs = headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-jws-signature"));
            if !caller_signs && let Some(sig) = self.jws_signature(b.as_bytes()) {
                req = req.header("x-jws-signature", sig);
            }
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let r = reply(req.send().await?).await?;
        self.remember_dpop_nonce(&r);
        Ok(r)
    }

    /// The `x-jws-signature` (UK OB detached JWS) of `body` by this TPP's signing key, as
    /// itself (`iss` = client id), now; `None` without a signing key.
    pub fn jws_signature(&self, body: &[u8]) -> Option<String> {
        let key = self.signer.as_ref()?;
        fapi_jose::detached::sign(
            key,
            body,
            &self.client_id,
            &self.jws_trust_anchor,
            (self.jws_clock)(),
        )
        .ok()
    }

    /// A resource call with exactly this body (none when empty) and these headers (no
    /// signature added), for tests of tampered bodies and bad signatures; the reply and
    /// its exact body bytes (what a response `x-jws-signature` covers).
    pub async fn resource_raw(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(Reply, Vec<u8>)> {
        let (http, scheme) = if self.uses_dpop() {
            (&self.http_no_cert, "DPoP")
        } else {
            (&self.http, "Bearer")
        };
        let mut req = http
            .request(method.clone(), url)
            .header(reqwest::header::AUTHORIZATION, format!("{scheme} {token}"))
            .header(reqwest::header::ACCEPT, "application/json");
        if !body.is_empty() {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if self.uses_dpop() {
            let htu = url.split('?').next().unwrap_or(url);
            req = req.header(
                "DPoP",
                self.dpop_proof(
                    method.as_str(),
                    htu,
                    Some(token),
                    self.current_dpop_nonce().as_deref(),
                ),
            );
        }
        let resp = req.send().await?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let raw = resp.bytes().await?.to_vec();
        let r = Reply {
            status,
            headers,
            body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        };
        self.remember_dpop_nonce(&r);
        Ok((r, raw))
    }

    /// [`Tpp::get_dpop_raw`] with extra headers and, when `with_cert`, the client
    /// certificate.
    pub async fn get_dpop_raw_with(
        &self,
        url: &str,
        scheme: &str,
        token: &str,
        proofs: &[String],
        headers: &[(&str, &str)],
        with_cert: bool,
    ) -> anyhow::Result<Reply> {
        let http = if with_cert {
            &self.http
        } else {
            &self.http_no_cert
        };
        let mut req = http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, format!("{scheme} {token}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        for p in proofs {
            req = req.header("DPoP", p);
        }
        let r = reply(req.send().await?).await?;
        self.remember_dpop_nonce(&r);
        Ok(r)
    }

    // ---- DPoP (RFC 9449) ------------------------------------------------------------

    /// Whether this client's tokens are DPoP-bound (it has a DPoP key).
    pub fn uses_dpop(&self) -> bool {
        self.dpop.is_some()
    }

    /// RFC 7638 thumbprint of the DPoP key: what `dpop_jkt` and `cnf.jkt` carry.
    pub fn dpop_jkt(&self) -> Option<String> {
        self.dpop
            .as_ref()
            .and_then(|k| k.public_jwk().thumbprint_s256().ok())
    }

    /// The claims of a proof for one request: a fresh `jti`, `htm`, `htu`, `iat`, and
    /// `ath` (the hash of `access_token`) and `nonce` when given.
    pub fn dpop_claims(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Value {
        let mut c = json!({"jti": random(16), "htm": htm, "htu": htu, "iat": (self.clock)()});
        if let Some(t) = access_token {
            c["ath"] = json!(fapi_jose::sha256_b64(t.as_bytes()));
        }
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        c
    }

    /// A DPoP proof for `htm` `htu` with this TPP's DPoP key (empty without one).
    pub fn dpop_proof(
        &self,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        match &self.dpop {
            Some(k) => sign_dpop_proof(
                k,
                &json!({}),
                &self.dpop_claims(htm, htu, access_token, nonce),
            ),
            None => String::new(),
        }
    }

    /// The nonce to put in the next proof, if a server asked for nonces.
    pub fn current_dpop_nonce(&self) -> Option<String> {
        self.dpop_nonce.lock().ok().and_then(|n| n.clone())
    }

    fn remember_dpop_nonce(&self, r: &Reply) {
        if let Some(n) = r.headers.get("dpop-nonce").and_then(|v| v.to_str().ok())
            && let Ok(mut g) = self.dpop_nonce.lock()
        {
            *g = Some(n.to_owned());
        }
    }

    /// POST a form with an optional `DPoP` header (no nonce handling).
    pub async fn post_form_dpop(
        &self,
        url: &str,
        form: &[(String, String)],
        proof: Option<&str>,
        with_cert: bool,
    ) -> anyhow::Result<Reply> {
        let http = if with_cert {
            &self.http
        } else {
            &self.http_no_cert
        };
        let mut req = http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(serde_urlencoded(form));
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        let r = reply(req.send().await?).await?;
        self.remember_dpop_nonce(&r);
        Ok(r)
    }

    /// POST `form()` (rebuilt per attempt: fresh assertion and proof) with a DPoP proof,
    /// with a client certificate only for `tls_client_auth`; retried once with the server's nonce when it answers
    /// `use_dpop_nonce` (RFC 9449 §8).
    async fn post_with_proof(
        &self,
        url: &str,
        form: impl Fn() -> Vec<(String, String)>,
    ) -> anyhow::Result<Reply> {
        let mut attempt = 0;
        loop {
            let proof = self.dpop_proof("POST", url, None, self.current_dpop_nonce().as_deref());
            // A certificate only where it authenticates the client (tls_client_auth).
            let with_cert = matches!(self.auth, Auth::TlsClientAuth);
            let r = self
                .post_form_dpop(url, &form(), Some(&proof), with_cert)
                .await?;
            attempt += 1;
            if attempt < 2 && r.status == StatusCode::BAD_REQUEST && r.error() == "use_dpop_nonce" {
                continue;
            }
            return Ok(r);
        }
    }

    /// A pushed authorization request carrying a DPoP proof, which binds the code to
    /// this TPP's DPoP key (RFC 9449 §10.1).
    pub async fn par_dpop(
        &self,
        pkce: &Pkce,
        state: &str,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let url = self.endpoint("pushed_authorization_request_endpoint");
        self.post_with_proof(&url, || self.par_form(pkce, state, nonce, extra))
            .await
    }

    /// A token request with a DPoP proof (RFC 9449 §5).
    pub async fn token_dpop(&self, params: &[(&str, &str)]) -> anyhow::Result<Reply> {
        let url = self.endpoint("token_endpoint");
        self.post_with_proof(&url, || self.form(params)).await
    }

    pub async fn exchange_code_dpop(&self, code: &str, pkce: &Pkce) -> anyhow::Result<Reply> {
        self.token_dpop(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", &pkce.verifier),
        ])
        .await
    }

    pub async fn refresh_dpop(&self, refresh_token: &str) -> anyhow::Result<Reply> {
        self.token_dpop(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    pub async fn client_credentials_dpop(&self, scope: &str) -> anyhow::Result<Reply> {
        self.token_dpop(&[("grant_type", "client_credentials"), ("scope", scope)])
            .await
    }

    /// GET with `Authorization: DPoP <token>` and a proof naming it (`ath`, RFC 9449
    /// §7.1), retried once with the nonce of a `use_dpop_nonce` challenge (§9).
    pub async fn get_with_dpop(&self, url: &str, token: &str) -> anyhow::Result<Reply> {
        let mut attempt = 0;
        loop {
            let proof = self.dpop_proof(
                "GET",
                url,
                Some(token),
                self.current_dpop_nonce().as_deref(),
            );
            let r = self.get_dpop_raw(url, "DPoP", token, &[proof]).await?;
            attempt += 1;
            let nonce_challenge = r
                .headers
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("use_dpop_nonce"));
            if attempt < 2 && r.status == StatusCode::UNAUTHORIZED && nonce_challenge {
                continue;
            }
            return Ok(r);
        }
    }

    /// GET with `Authorization: <scheme> <token>` and these `DPoP` header values, without
    /// a client certificate (no nonce handling).
    pub async fn get_dpop_raw(
        &self,
        url: &str,
        scheme: &str,
        token: &str,
        proofs: &[String],
    ) -> anyhow::Result<Reply> {
        let mut req = self
            .http_no_cert
            .get(url)
            .header(reqwest::header::AUTHORIZATION, format!("{scheme} {token}"));
        for p in proofs {
            req = req.header("DPoP", p);
        }
        let r = reply(req.send().await?).await?;
        self.remember_dpop_nonce(&r);
        Ok(r)
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

/// A random RFC 4122 version-4 UUID string (for `x-fapi-interaction-id`).
pub fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        (b[8] & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
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
