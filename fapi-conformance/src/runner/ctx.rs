//! Per-variant state shared by the modules: the two clients, the customer pool, and the
//! building blocks every module uses (pushing a request, driving the customer's browser,
//! exchanging a code, calling the protected resource). With `sender_constrain=dpop` the
//! same building blocks send DPoP proofs (RFC 9449) where the mTLS variant relies on the
//! client certificate.

use super::browse::{Form, error_page};
use super::log::Log;
use super::variant::{Capabilities, RequestMethod, SenderConstrain, Variant};
use crate::Pkce;
use crate::browser::{Customer, totp};
use crate::kit::{Kit, KitClient};
use crate::tpp::{ASSERTION_TYPE, Auth, Reply, Tpp, enc, now, random, sign_dpop_proof};
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// Sandbox customers that may log in. Each TOTP time-step is accepted once per customer,
/// so logins are spread over the pool; with no pool, a login waits for the next step.
pub struct Customers {
    names: Vec<String>,
    password: String,
    secret: String,
    state: Mutex<(usize, HashMap<String, i64>)>,
}

impl Customers {
    pub fn from_kit(kit: &Kit) -> Self {
        let mut names: Vec<String> = match &kit.customer_pool {
            Some(p) => (1..=p.count).map(|n| p.username(n)).collect(),
            None => Vec::new(),
        };
        names.push(kit.customer.username.clone());
        // Start somewhere random so two runs close together rarely collide.
        let start = rand::random::<u32>() as usize % names.len();
        Self {
            names,
            password: kit.customer.password.clone(),
            secret: kit.customer.totp_secret.clone(),
            state: Mutex::new((start, HashMap::new())),
        }
    }

    pub fn pool_size(&self) -> usize {
        self.names.len()
    }

    /// A customer not used in the current TOTP step, with its current code.
    pub async fn take(&self) -> anyhow::Result<(String, String, String)> {
        loop {
            let t = now();
            let step = t / 30;
            {
                let mut g = self
                    .state
                    .lock()
                    .map_err(|_| anyhow::anyhow!("customer pool lock poisoned"))?;
                let n = self.names.len();
                for i in 0..n {
                    let idx = (g.0 + i) % n;
                    let name = &self.names[idx];
                    if g.1.get(name).is_none_or(|s| *s < step) {
                        g.1.insert(name.clone(), step);
                        g.0 = idx + 1;
                        return Ok((name.clone(), self.password.clone(), totp(&self.secret, t)?));
                    }
                }
            }
            let wait = 30 - t.rem_euclid(30);
            tokio::time::sleep(Duration::from_millis(wait as u64 * 1000 + 300)).await;
        }
    }
}

/// How a request authenticates the client.
#[derive(Clone)]
pub enum ClientAuth {
    /// The client's registered method.
    Normal,
    /// `client_id` + this `client_assertion`.
    Assertion(String),
    /// `client_id` only (no assertion).
    ClientIdOnly,
}

/// How a DPoP client binds the authorization code at PAR (RFC 9449 §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopPar {
    /// A DPoP proof in the PAR request (§10.1).
    Proof,
    /// The `dpop_jkt` parameter only, as the suite's happy flow does for client 2.
    Jkt,
    /// Neither: the code is not bound.
    Unbound,
    /// This proof (the modules' negative cases).
    Custom(String),
}

/// How a signed_non_repudiation variant carries the request at PAR (ignored otherwise).
#[derive(Debug, Clone)]
pub enum Ro {
    /// A request object signed with the client's key, claims overridden by `ro_claims`.
    Signed,
    /// Exactly this `request` value.
    Raw(String),
    /// Plain form parameters, no request object.
    Unsigned,
}

/// UK Open Banking (`fapi_profile=openbanking_uk`): the account-access intent a request
/// names in `claims` (ignored in other profiles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Create one with the requesting client just before PAR (the suite's pre-authorization
    /// steps): client-credentials token, `POST /account-access-consents`.
    Auto,
    /// Name this consent id.
    Id(String),
    /// Name none.
    Skip,
}

/// The `acr` claim every UK OB request asks for, as the suite does
/// (`OpenBankingUkAddMultipleAcrClaimsToAuthorizationEndpointRequest`).
pub fn uk_default_acr() -> Value {
    json!({"values": [ACR_SCA, "urn:openbanking:psd2:ca"], "essential": true})
}

/// UK OB strong customer authentication.
pub const ACR_SCA: &str = "urn:openbanking:psd2:sca";

/// An authorization request before it is pushed: the parameters the modules vary.
#[derive(Debug, Clone)]
pub struct Req {
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// Added or replacing parameters.
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// DPoP variants: how the code is bound (ignored for certificate-bound clients).
    pub dpop_par: DpopPar,
    /// Form parameters sent at PAR outside the request object (signed variants); with
    /// unsigned variants they are simply further form parameters.
    pub outside: Vec<(String, String)>,
    /// Signed variants: how the request object is made.
    pub ro: Ro,
    /// Signed variants: request object claim overrides (`null` removes a claim).
    pub ro_claims: Value,
    /// UK OB: the intent named in `claims` (merged into any `claims` the module sets).
    pub intent: Intent,
    /// UK OB: the `acr` member of the `claims` parameter's `id_token` (default
    /// [`uk_default_acr`]).
    pub acr: Option<Value>,
}

impl Req {
    pub fn set(mut self, k: &str, v: &str) -> Self {
        self.set.retain(|(n, _)| n != k);
        self.set.push((k.to_owned(), v.to_owned()));
        self
    }
    pub fn remove(mut self, k: &str) -> Self {
        self.remove.push(k.to_owned());
        self
    }
}

/// A pushed request and what is needed to continue with it.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub pkce: Pkce,
    pub req: Req,
    pub request_uri: String,
    pub expires_in: i64,
    pub pushed_at: i64,
    /// Authorization URL carrying only `client_id` and `request_uri`.
    pub url: String,
}

/// How the customer should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Approve,
    Deny,
    /// Stop when the login page shows (a link preloader's visit).
    StopAtLogin,
}

/// Where the front channel ended.
#[derive(Debug, Clone)]
pub enum Front {
    /// Redirected to a client redirect URI.
    Callback(Url),
    /// The AS showed a page instead (an error page, normally).
    Page {
        status: u16,
        error: Option<String>,
        title: String,
    },
    /// The login page (only with [`Mode::StopAtLogin`]).
    LoginPage,
}

impl Front {
    pub fn param(&self, k: &str) -> Option<String> {
        match self {
            Front::Callback(u) => crate::browser::param(u, k),
            _ => None,
        }
    }
}

/// Tokens from a successful code exchange.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub reply: Reply,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<Value>,
}

pub struct Ctx {
    pub kit: Kit,
    pub variant: Variant,
    pub caps: Capabilities,
    /// Client 1: the variant's authentication method.
    pub c1: Tpp,
    /// Client 2: another client (same method when the kit has two, else the other one).
    pub c2: Tpp,
    pub ca_pem: Vec<u8>,
    pub customers: Arc<Customers>,
    /// Configured authorization code lifetime (seconds).
    pub code_lifetime: u64,
    /// Variant-level notes (e.g. how client 2 was chosen).
    pub notes: Vec<String>,
    jwks: tokio::sync::OnceCell<Vec<fapi_jose::Jwk>>,
}

impl Ctx {
    pub async fn new(
        kit: &Kit,
        variant: Variant,
        caps: Capabilities,
        customers: Arc<Customers>,
        code_lifetime: u64,
    ) -> anyhow::Result<Self> {
        let method = variant.auth_method();
        let dpop = variant.sender_constrain == SenderConstrain::Dpop;
        let same = variant_clients(kit, &variant);
        let k1 = *same
            .first()
            .with_context(|| kit_gap(kit, &variant).unwrap_or_default())?;
        let mut notes = Vec::new();
        let k2 = match same.get(1) {
            Some(c) => *c,
            None => {
                let others = || kit.clients.iter().filter(|c| c.client_id != k1.client_id);
                let other = others()
                    .find(|c| c.uses_dpop() == dpop)
                    .or_else(|| others().next())
                    .context("kit has only one client; two are needed")?;
                notes.push(format!(
                    "client2 is {} ({}): the kit has one {method} client only; the OIDF suite needs two clients with the same method",
                    other.client_id, other.token_endpoint_auth_method
                ));
                other
            }
        };
        let scope = |s: &str| -> String {
            if variant.openid() {
                if s.split(' ').any(|x| x == "openid") {
                    s.to_owned()
                } else {
                    format!("openid {s}")
                }
            } else {
                s.split(' ')
                    .filter(|x| !x.is_empty() && *x != "openid")
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        // UK OB: account information only, as the suite's client.scope would be.
        let scope = |s: &str| -> String {
            if variant.uk() {
                scope("accounts")
            } else {
                scope(s)
            }
        };
        let mut c1 = Tpp::from_kit(kit, k1).await?;
        c1.scope = scope(&c1.scope);
        let mut c2 = Tpp::from_kit(kit, k2).await?;
        c2.scope = scope(&c2.scope);
        if variant.uk() {
            notes.push(format!(
                "openbanking_uk: every authorization first creates an account-access consent with the same client (client_credentials token, POST {}) and names it in claims (openbanking_intent_id, essential; acr sca/ca as the suite asks); the protected resource is the RS accounts endpoint {}",
                super::uk_consents_url(kit),
                super::uk_accounts_url(kit)
            ));
        } else if !variant.openid() {
            notes.push("plain_oauth: no resource server yet, so the userinfo endpoint stands in for the resource (without the openid scope it answers 403 insufficient_scope after validating the token and its binding)".into());
        }
        let ca_pem = std::fs::read(&kit.ca_cert)
            .with_context(|| format!("reading {}", kit.ca_cert.display()))?;
        Ok(Self {
            kit: kit.clone(),
            variant,
            caps,
            c1,
            c2,
            ca_pem,
            customers,
            code_lifetime,
            notes,
            jwks: tokio::sync::OnceCell::new(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.kit.issuer
    }

    pub fn openid(&self) -> bool {
        self.variant.openid()
    }

    /// A standard request: random state, and a nonce for OpenID Connect.
    pub fn req(&self) -> Req {
        Req {
            state: Some(random(24)),
            nonce: self.openid().then(|| random(24)),
            set: Vec::new(),
            remove: Vec::new(),
            dpop_par: DpopPar::Proof,
            outside: Vec::new(),
            ro: Ro::Signed,
            ro_claims: json!({}),
            intent: Intent::Auto,
            acr: None,
        }
    }

    /// The UK Open Banking profile.
    pub fn uk(&self) -> bool {
        self.variant.uk()
    }

    pub fn signed(&self) -> bool {
        self.variant.signed()
    }

    pub fn jarm(&self) -> bool {
        self.variant.jarm()
    }

    pub fn dpop(&self) -> bool {
        self.variant.sender_constrain == SenderConstrain::Dpop
    }

    /// A DPoP proof by `key` for `htm` `htu` (with `ath` for `access_token`), header and
    /// claims overridden by `header` / `claims` (`null` removes a member).
    pub fn proof_by(
        &self,
        key: &fapi_jose::SigningKey,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        header: Value,
        claims: Value,
    ) -> String {
        let mut c = json!({"jti": random(16), "htm": htm, "htu": htu, "iat": now()});
        if let Some(t) = access_token {
            c["ath"] = json!(fapi_jose::sha256_b64(t.as_bytes()));
        }
        if let (Some(c), Some(o)) = (c.as_object_mut(), claims.as_object()) {
            for (k, v) in o {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        sign_dpop_proof(key, &header, &c)
    }

    /// A proof by `tpp`'s DPoP key (with the last server nonce, if any), overridden as in
    /// [`Ctx::proof_by`]. Empty for a client without a DPoP key.
    pub fn proof(
        &self,
        tpp: &Tpp,
        htm: &str,
        htu: &str,
        access_token: Option<&str>,
        header: Value,
        mut claims: Value,
    ) -> String {
        let Some(k) = &tpp.dpop else {
            return String::new();
        };
        if let (Some(n), Some(c)) = (tpp.current_dpop_nonce(), claims.as_object_mut())
            && !c.contains_key("nonce")
        {
            c.insert("nonce".into(), json!(n));
        }
        self.proof_by(k, htm, htu, access_token, header, claims)
    }

    /// POST `form` as `tpp` sends it. Certificate-bound clients present their certificate
    /// when `with_pop`; DPoP clients send `proof` (default: a fresh one, when `with_pop`)
    /// and a certificate only if they authenticate with it; a `use_dpop_nonce` answer to a
    /// default proof is retried once with the nonce (RFC 9449 §8).
    pub async fn post_as(
        &self,
        tpp: &Tpp,
        url: &str,
        form: &[(String, String)],
        with_pop: bool,
        proof: Option<String>,
    ) -> anyhow::Result<Reply> {
        if !tpp.uses_dpop() {
            return tpp.post_form(url, form, with_pop).await;
        }
        let with_cert = matches!(tpp.auth, Auth::TlsClientAuth);
        let fixed = proof.is_some();
        for attempt in 0..2 {
            let p = match &proof {
                Some(p) => Some(p.clone()),
                None if with_pop => Some(self.proof(tpp, "POST", url, None, json!({}), json!({}))),
                None => None,
            };
            let r = tpp
                .post_form_dpop(url, form, p.as_deref(), with_cert)
                .await?;
            let retry = !fixed
                && with_pop
                && attempt == 0
                && r.status.as_u16() == 400
                && r.error() == "use_dpop_nonce";
            if !retry {
                return Ok(r);
            }
        }
        anyhow::bail!("unreachable: the retry loop returns")
    }

    pub fn par_params(&self, tpp: &Tpp, pkce: &Pkce, req: &Req) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = [
            ("response_type", "code"),
            ("redirect_uri", tpp.redirect_uri.as_str()),
            ("scope", tpp.scope.as_str()),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        if let Some(s) = &req.state {
            p.push(("state".into(), s.clone()));
        }
        if let Some(n) = &req.nonce {
            p.push(("nonce".into(), n.clone()));
        }
        if self.jarm() {
            p.push(("response_mode".into(), "jwt".into()));
        }
        for (k, v) in &req.set {
            p.retain(|(n, _)| n != k);
            p.push((k.clone(), v.clone()));
        }
        p.retain(|(n, _)| !req.remove.contains(n));
        if self.uk()
            && let Intent::Id(id) = &req.intent
        {
            let mut claims = p
                .iter()
                .find(|(n, _)| n == "claims")
                .and_then(|(_, v)| serde_json::from_str::<Value>(v).ok())
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            if !claims["id_token"].is_object() {
                claims["id_token"] = json!({});
            }
            claims["id_token"]["openbanking_intent_id"] = json!({"value": id, "essential": true});
            claims["id_token"]["acr"] = req.acr.clone().unwrap_or_else(uk_default_acr);
            p.retain(|(n, _)| n != "claims");
            p.push(("claims".into(), claims.to_string()));
        }
        p
    }

    /// The PAR form for `req` after client authentication: the parameters themselves, or
    /// for signed variants `client_id` and the request object; then `req.outside`.
    pub fn par_body(&self, tpp: &Tpp, pkce: &Pkce, req: &Req) -> Vec<(String, String)> {
        let params = self.par_params(tpp, pkce, req);
        let mut form = Vec::new();
        if !self.signed() || matches!(req.ro, Ro::Unsigned) {
            form.extend(params);
        } else {
            form.push(("client_id".to_owned(), tpp.client_id.clone()));
            // `claims` is a JSON object member of a request object (OIDC Core §6.1).
            let mut params = params;
            let mut ro_claims = req.ro_claims.clone();
            if let Some(i) = params.iter().position(|(n, _)| n == "claims")
                && let Ok(c) = serde_json::from_str::<Value>(&params[i].1)
                && let Some(o) = ro_claims.as_object_mut()
            {
                params.remove(i);
                o.entry("claims").or_insert(c);
            }
            let ro = match &req.ro {
                Ro::Raw(s) => s.clone(),
                _ => tpp.request_object(&params, ro_claims),
            };
            form.push(("request".to_owned(), ro));
        }
        form.extend(req.outside.iter().cloned());
        form
    }

    /// Client authentication parameters.
    pub fn auth(&self, tpp: &Tpp, how: &ClientAuth) -> Vec<(String, String)> {
        match how {
            ClientAuth::Normal => tpp.auth_params(),
            ClientAuth::Assertion(a) => vec![
                ("client_id".into(), tpp.client_id.clone()),
                ("client_assertion_type".into(), ASSERTION_TYPE.into()),
                ("client_assertion".into(), a.clone()),
            ],
            ClientAuth::ClientIdOnly => vec![("client_id".into(), tpp.client_id.clone())],
        }
    }

    pub fn par_url(&self, tpp: &Tpp) -> String {
        tpp.endpoint("pushed_authorization_request_endpoint")
    }

    pub fn token_url(&self, tpp: &Tpp) -> String {
        tpp.endpoint("token_endpoint")
    }

    /// UK OB: `req` with its [`Intent::Auto`] replaced by a consent `tpp` creates now.
    pub async fn with_intent(&self, log: &mut Log, tpp: &Tpp, req: &Req) -> anyhow::Result<Req> {
        let mut req = req.clone();
        if self.uk() && req.intent == Intent::Auto {
            req.intent = Intent::Id(self.create_intent(log, tpp).await?);
        }
        Ok(req)
    }

    /// UK OB pre-authorization steps: a client-credentials token (scope `accounts`,
    /// sender-constrained like every token of the variant), then
    /// `POST /account-access-consents`, which must answer 201 with an `AWAU` consent and
    /// echo `x-fapi-interaction-id`. Returns the `ConsentId`.
    pub async fn create_intent(&self, log: &mut Log, tpp: &Tpp) -> anyhow::Result<String> {
        let mut form = self.auth(tpp, &ClientAuth::Normal);
        form.push(("grant_type".into(), "client_credentials".into()));
        form.push(("scope".into(), "accounts".into()));
        let r = self.token_call(log, tpp, form, true).await?;
        if !log.check(
            r.status.as_u16() == 200 && r.str("access_token").is_some(),
            "RFC6749-4.4.3",
            format!(
                "client_credentials token for the account-access consent (got {} {})",
                r.status,
                r.error()
            ),
        ) {
            anyhow::bail!("no client_credentials token: {} {}", r.status, r.body);
        }
        let cc = r.str("access_token").unwrap_or_default().to_owned();
        let url = super::uk_consents_url(&self.kit);
        let body = json!({
            "Data": {
                "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail",
                    "ReadTransactionsCredits", "ReadTransactionsDebits"],
                "ExpirationDateTime": "2099-01-01T00:00:00Z",
                "TransactionFromDateTime": "2020-01-01T00:00:00Z",
                "TransactionToDateTime": "2099-01-01T00:00:00Z"
            },
            "Risk": {}
        });
        let interaction = crate::tpp::uuid_like();
        let r = tpp
            .resource_with_headers(
                reqwest::Method::POST,
                &url,
                &cc,
                Some(&body),
                &[("x-fapi-interaction-id", interaction.as_str())],
                self.uk_cert(tpp),
            )
            .await?;
        log.evidence(
            "resource",
            format!("POST {url} (account-access consent, client_credentials token)"),
            Some(r.status.as_u16()),
            r.body["Errors"][0]["ErrorCode"].as_str().map(str::to_owned),
            r.body["Data"]["ConsentId"]
                .as_str()
                .map(|c| format!("ConsentId {c}, Status {}", r.body["Data"]["Status"])),
        );
        self.check_interaction_id(log, &r, &interaction);
        let id = r.body["Data"]["ConsentId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !log.check(
            r.status.as_u16() == 201 && !id.is_empty(),
            "OB-AIS-4.0",
            format!(
                "account-access consent created: 201 with Data.ConsentId (got {} {})",
                r.status, r.body["Errors"][0]["ErrorCode"]
            ),
        ) {
            anyhow::bail!("account-access consent refused: {} {}", r.status, r.body);
        }
        log.check(
            r.body["Data"]["Status"] == "AWAU",
            "OB-AIS-4.0",
            format!(
                "a new consent awaits authorisation (Status AWAU, got {})",
                r.body["Data"]["Status"]
            ),
        );
        Ok(id)
    }

    /// UK OB: the resource server must echo `x-fapi-interaction-id` (on errors too).
    pub fn check_interaction_id(&self, log: &mut Log, r: &Reply, sent: &str) {
        let got = r
            .headers
            .get("x-fapi-interaction-id")
            .and_then(|v| v.to_str().ok());
        log.check(
            got == Some(sent),
            "FAPI1-BASE-6.2.1-11",
            format!("the resource server echoes x-fapi-interaction-id (sent {sent}, got {got:?})"),
        );
    }

    /// UK OB requires mTLS everywhere (the suite's `requiresMtlsEverywhere`): the client
    /// certificate goes to the resource server even with DPoP-bound tokens.
    pub fn uk_cert(&self, _tpp: &Tpp) -> bool {
        true
    }

    /// POST a pushed authorization request; evidence is recorded. UK OB: an
    /// [`Intent::Auto`] request first creates its consent.
    pub async fn par(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        pkce: &Pkce,
        req: &Req,
        how: &ClientAuth,
    ) -> anyhow::Result<Reply> {
        let resolved;
        let req = if self.uk() && req.intent == Intent::Auto {
            resolved = self.with_intent(log, tpp, req).await?;
            &resolved
        } else {
            req
        };
        let mut form = self.auth(tpp, how);
        for (k, v) in self.par_body(tpp, pkce, req) {
            // client_id is part of the client authentication already for some methods.
            if !(k == "client_id" && form.iter().any(|(n, x)| *n == k && *x == v)) {
                form.push((k, v));
            }
        }
        let url = self.par_url(tpp);
        let (r, label) = if tpp.uses_dpop() {
            match &req.dpop_par {
                DpopPar::Proof => (
                    self.post_as(tpp, &url, &form, true, None).await?,
                    "POST PAR (DPoP proof)",
                ),
                DpopPar::Custom(p) => (
                    self.post_as(tpp, &url, &form, true, Some(p.clone()))
                        .await?,
                    "POST PAR (DPoP proof)",
                ),
                DpopPar::Jkt => {
                    if !form.iter().any(|(k, _)| k == "dpop_jkt") {
                        form.push(("dpop_jkt".into(), tpp.dpop_jkt().unwrap_or_default()));
                    }
                    (
                        self.post_as(tpp, &url, &form, false, None).await?,
                        "POST PAR",
                    )
                }
                DpopPar::Unbound => (
                    self.post_as(tpp, &url, &form, false, None).await?,
                    "POST PAR",
                ),
            }
        } else {
            (tpp.post_form(&url, &form, true).await?, "POST PAR")
        };
        log.reply("PAR", summarize(label, &form), &r);
        Ok(r)
    }

    pub fn authorize_url(&self, tpp: &Tpp, request_uri: &str) -> String {
        tpp.authorize_url(request_uri)
    }

    /// Push a request that must be accepted (201 with `request_uri` and `expires_in`).
    pub async fn push(&self, log: &mut Log, tpp: &Tpp, req: Req) -> anyhow::Result<Pushed> {
        let req = self.with_intent(log, tpp, &req).await?;
        let pkce = Pkce::new();
        let pushed_at = now();
        let r = self.par(log, tpp, &pkce, &req, &ClientAuth::Normal).await?;
        if !log.check(
            r.status.as_u16() == 201,
            "PAR-2.2",
            format!("PAR answers 201 Created (got {})", r.status),
        ) {
            anyhow::bail!("PAR refused: {} {}", r.status, r.body);
        }
        let request_uri = r.str("request_uri").unwrap_or_default().to_owned();
        let expires_in = r.body.get("expires_in").and_then(|v| v.as_i64());
        log.check(
            !request_uri.is_empty() && expires_in.is_some(),
            "PAR-2.2",
            "PAR response carries request_uri and expires_in",
        );
        Ok(Pushed {
            url: self.authorize_url(tpp, &request_uri),
            pkce,
            req,
            request_uri,
            expires_in: expires_in.unwrap_or(0),
            pushed_at,
        })
    }

    /// Drive the customer's browser from `url` through login, second factor and consent.
    /// `extra` names further redirect URIs to treat as the client's.
    pub async fn drive(
        &self,
        log: &mut Log,
        url: &str,
        mode: Mode,
        extra: &[&str],
    ) -> anyhow::Result<Front> {
        let mut callbacks: Vec<&str> = vec![&self.c1.redirect_uri, &self.c2.redirect_uri];
        callbacks.extend_from_slice(extra);
        for attempt in 0..4 {
            match self.drive_once(url, mode, &callbacks).await? {
                Some(f) => {
                    record_front(log, url, &f);
                    return match f {
                        Front::Callback(u) if self.jarm() => self.decode_jarm(log, &u).await,
                        f => Ok(f),
                    };
                }
                None => log.note(format!(
                    "one-time code refused on attempt {} (time-step already used by another run?); retrying with another customer",
                    attempt + 1
                )),
            }
        }
        anyhow::bail!("the second factor was refused four times")
    }

    /// JARM (FAPI 2.0 MS §5.4.1, JARM §4.1): the redirect must carry only `response`, a
    /// JWT signed by the AS (checked against its JWKS) with `iss` the issuer, `aud` one of
    /// the variant's clients (the exact client is checked by the caller through the
    /// `aud` parameter) and an `exp` in the future. Returns the callback rewritten with the
    /// JWT's claims as plain query parameters, so modules read code / state / error / iss
    /// the same way in every variant. A redirect without `response` is a FAIL.
    async fn decode_jarm(&self, log: &mut Log, u: &Url) -> anyhow::Result<Front> {
        let bare = u.as_str().split(['?', '#']).next().unwrap_or_default();
        let names: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let Some(jwt) = crate::browser::param(u, "response") else {
            log.fail(
                "FAPI2-MS-FINAL-5.4",
                format!("the authorization response is not JWT-secured (JARM): redirect parameters {names:?}"),
            );
            return Ok(Front::Callback(u.clone()));
        };
        log.check(
            names == ["response"],
            "JARM-4.1",
            format!("the redirect carries only the response parameter (got {names:?})"),
        );
        let parsed = fapi_jose::Unverified::parse(&jwt).map_err(|e| anyhow::anyhow!("{e}"));
        let u2 = match parsed {
            Err(e) => {
                log.fail(
                    "JARM-4.1",
                    format!("the response parameter is not a JWT: {e}"),
                );
                anyhow::bail!("unparseable JARM response");
            }
            Ok(p) => {
                let keys = self.server_keys().await?;
                let sig = p.verify_with_set(keys);
                log.check(
                    sig.is_ok(),
                    "JARM-4.4",
                    format!(
                        "the JARM response is signed ({}) by a key in the AS's JWKS{}",
                        p.header.alg,
                        sig.as_ref()
                            .err()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                );
                let c = &p.claims;
                log.check(
                    c["iss"] == self.issuer(),
                    "JARM-4.4",
                    format!("JARM iss is the issuer (got {})", c["iss"]),
                );
                let aud = c["aud"].as_str().unwrap_or_default();
                log.check(
                    aud == self.c1.client_id || aud == self.c2.client_id,
                    "JARM-4.4",
                    format!("JARM aud is the client (got {})", c["aud"]),
                );
                let exp = c.get("exp").and_then(Value::as_i64);
                log.check(
                    exp.is_some_and(|e| e > now()),
                    "JARM-4.4",
                    format!("JARM exp is present and in the future (got {exp:?})"),
                );
                let mut out = Url::parse(bare)?;
                if let Some(o) = c.as_object() {
                    let mut q = out.query_pairs_mut();
                    for (k, v) in o {
                        if let Some(s) = v.as_str() {
                            q.append_pair(k, s);
                        }
                    }
                }
                let keys: Vec<&String> = c
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                log.note(format!("JARM response claims: {keys:?}"));
                out
            }
        };
        Ok(Front::Callback(u2))
    }

    /// One pass; `None` when the one-time code was refused (retry with another customer).
    async fn drive_once(
        &self,
        url: &str,
        mode: Mode,
        callbacks: &[&str],
    ) -> anyhow::Result<Option<Front>> {
        let agent = Customer::new(&self.ca_pem, self.issuer())?;
        let base = Url::parse(self.issuer())?;
        let mut page = agent.get(url).await?;
        let mut current = Url::parse(url)?;
        let (mut did_password, mut did_otp, mut did_decide) = (false, false, false);
        let mut otp_code: Option<String> = None;
        for _ in 0..12 {
            let status = page.status.as_u16();
            if (300..400).contains(&status) {
                let loc = page.location.clone().unwrap_or_default();
                let next = current.join(&loc).or_else(|_| base.join(&loc))?;
                let bare = next.as_str().split(['?', '#']).next().unwrap_or_default();
                if callbacks.contains(&bare) || next.origin() != base.origin() {
                    return Ok(Some(Front::Callback(next)));
                }
                current = next.clone();
                page = agent.get(next.as_str()).await?;
                continue;
            }
            let Some(form) = Form::parse(&page.html) else {
                return Ok(Some(error_page(status, &page.html)));
            };
            let action = current.join(&form.action)?.to_string();
            let mut fields = form.hidden.clone();
            if form.has("password") {
                if mode == Mode::StopAtLogin {
                    return Ok(Some(Front::LoginPage));
                }
                anyhow::ensure!(!did_password, "the login form came back: password refused");
                did_password = true;
                let (user, pw, otp) = self.customers.take().await?;
                fields.push((form.text_name("username"), user));
                fields.push(("password".into(), pw));
                otp_code = Some(otp);
                page = post(&agent, &action, &fields).await?;
                current = Url::parse(&action)?;
                continue;
            }
            if form.has("otp") {
                if did_otp {
                    return Ok(None);
                }
                did_otp = true;
                let otp = otp_code
                    .take()
                    .context("second-factor form before the password form")?;
                fields.push(("otp".into(), otp));
                page = post(&agent, &action, &fields).await?;
                current = Url::parse(&action)?;
                continue;
            }
            if form.buttons.iter().any(|(n, _)| n == "decision") {
                let want = if mode == Mode::Deny {
                    "deny"
                } else {
                    "approve"
                };
                anyhow::ensure!(
                    !did_decide,
                    "the consent page came back after {want} ({} account(s) offered to share{})",
                    form.checkboxes.len(),
                    if form.checkboxes.is_empty() && self.uk() {
                        ": this customer holds no bank accounts, so an account-access consent cannot be approved"
                    } else {
                        ""
                    }
                );
                did_decide = true;
                // An account-access consent: share every account offered.
                if mode != Mode::Deny {
                    fields.extend(form.checkboxes.iter().cloned());
                }
                fields.push(("decision".into(), want.into()));
                page = post(&agent, &action, &fields).await?;
                current = Url::parse(&action)?;
                continue;
            }
            return Ok(Some(error_page(status, &page.html)));
        }
        anyhow::bail!("too many steps in the customer's interaction")
    }

    /// Push, approve, and check the authorization response; returns the code.
    pub async fn authorize(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        req: Req,
    ) -> anyhow::Result<(Pushed, String)> {
        let p = self.push(log, tpp, req).await?;
        let f = self.drive(log, &p.url, Mode::Approve, &[]).await?;
        let code = self.check_success_callback(log, tpp, &f, p.req.state.as_deref())?;
        Ok((p, code))
    }

    /// The whole flow up to the tokens, every step checked.
    pub async fn flow(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        req: Req,
    ) -> anyhow::Result<(Pushed, Tokens)> {
        let (p, code) = self.authorize(log, tpp, req).await?;
        let r = self
            .exchange(log, tpp, &code, &p.pkce, &ClientAuth::Normal, true)
            .await?;
        let t = self
            .check_tokens(log, tpp, &r, p.req.nonce.as_deref())
            .await?;
        self.check_intent_in_id_token(log, &p.req, &t);
        Ok((p, t))
    }

    /// UK OB (the suite's `OBValidateIdTokenIntentId`): the ID token names the intent.
    pub fn check_intent_in_id_token(&self, log: &mut Log, req: &Req, t: &Tokens) {
        if let (true, Intent::Id(id), Some(idt)) = (self.uk(), &req.intent, &t.id_token) {
            log.check(
                idt["openbanking_intent_id"].as_str() == Some(id.as_str()),
                "OIDCC-2",
                format!(
                    "the ID token's openbanking_intent_id is the consent requested ({id}; got {})",
                    idt["openbanking_intent_id"]
                ),
            );
        }
    }

    /// Authorization-code grant.
    pub async fn exchange(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        code: &str,
        pkce: &Pkce,
        how: &ClientAuth,
        with_cert: bool,
    ) -> anyhow::Result<Reply> {
        let mut form = self.auth(tpp, how);
        form.extend(
            [
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &tpp.redirect_uri),
                ("code_verifier", &pkce.verifier),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.token_call(log, tpp, form, with_cert).await
    }

    /// POST to the token endpoint with `form` (already carrying client authentication).
    /// `with_pop`: with the client's proof of possession — its certificate, or for DPoP
    /// clients a DPoP proof.
    pub async fn token_call(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        form: Vec<(String, String)>,
        with_pop: bool,
    ) -> anyhow::Result<Reply> {
        let label = match (tpp.uses_dpop(), with_pop) {
            (false, true) => "POST token",
            (false, false) => "POST token (no client certificate)",
            (true, true) => "POST token (DPoP proof)",
            (true, false) => "POST token (no DPoP proof)",
        };
        let r = self
            .post_as(tpp, &self.token_url(tpp), &form, with_pop, None)
            .await?;
        log.reply("token", summarize(label, &form), &r);
        Ok(r)
    }

    /// POST to the token endpoint with exactly this DPoP proof.
    pub async fn token_call_with_proof(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        form: Vec<(String, String)>,
        proof: String,
    ) -> anyhow::Result<Reply> {
        let r = self
            .post_as(tpp, &self.token_url(tpp), &form, true, Some(proof))
            .await?;
        log.reply("token", summarize("POST token (DPoP proof)", &form), &r);
        Ok(r)
    }

    /// The authorization-code grant form for `code`, authenticated normally.
    pub fn code_form(&self, tpp: &Tpp, code: &str, pkce: &Pkce) -> Vec<(String, String)> {
        let mut form = self.auth(tpp, &ClientAuth::Normal);
        form.extend(
            [
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &tpp.redirect_uri),
                ("code_verifier", &pkce.verifier),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        form
    }

    /// GET the protected resource: the RS accounts endpoint in UK OB variants, else
    /// userinfo (standing in for an RS, as the suite's plain_fapi `resourceUrl`). UK OB
    /// calls carry `x-fapi-interaction-id`, whose echo is checked. `with_cert`:
    /// with the client's proof of possession. For DPoP clients a `Bearer` scheme (in any
    /// case) becomes `DPoP` (in the same case pattern) and the proof is a DPoP proof
    /// carrying `ath`, retried once with a `use_dpop_nonce` challenge's nonce (RFC 9449 §9).
    pub async fn resource(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        token: &str,
        scheme: &str,
        with_cert: bool,
    ) -> anyhow::Result<Reply> {
        if tpp.uses_dpop() {
            let scheme = match scheme {
                "Bearer" => "DPoP",
                s if s.eq_ignore_ascii_case("bearer") => "dPOP",
                s => s,
            };
            let url = self.resource_url(tpp);
            for attempt in 0..2 {
                let proofs = if with_cert {
                    vec![self.proof(tpp, "GET", &url, Some(token), json!({}), json!({}))]
                } else {
                    Vec::new()
                };
                let r = self.resource_dpop(log, tpp, scheme, token, &proofs).await?;
                let nonce = r
                    .headers
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("use_dpop_nonce"));
                if !(with_cert && attempt == 0 && r.status.as_u16() == 401 && nonce) {
                    return Ok(r);
                }
            }
            anyhow::bail!("unreachable: the retry loop returns");
        }
        let url = self.resource_url(tpp);
        let http = if with_cert {
            &tpp.http
        } else {
            &tpp.http_no_cert
        };
        let interaction = crate::tpp::uuid_like();
        let mut rb = http
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, format!("{scheme} {token}"));
        if self.uk() {
            rb = rb
                .header("x-fapi-interaction-id", &interaction)
                .header(reqwest::header::ACCEPT, "application/json");
        }
        let resp = rb.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await?;
        let r = Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        let www = r
            .headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        log.evidence(
            "resource",
            format!(
                "GET {url} Authorization: {scheme} <{}>{}",
                tpp.client_id,
                if with_cert {
                    ""
                } else {
                    " (no client certificate)"
                }
            ),
            Some(status.as_u16()),
            resource_error(&r),
            www,
        );
        if self.uk() {
            self.check_interaction_id(log, &r, &interaction);
        }
        Ok(r)
    }

    /// GET the resource with `Authorization: <scheme> <token>` and exactly these `DPoP`
    /// header values (no certificate unless the client authenticates with one, or the UK
    /// OB profile, which presents it everywhere; no retry).
    pub async fn resource_dpop(
        &self,
        log: &mut Log,
        tpp: &Tpp,
        scheme: &str,
        token: &str,
        proofs: &[String],
    ) -> anyhow::Result<Reply> {
        let url = self.resource_url(tpp);
        let interaction = crate::tpp::uuid_like();
        let r = if self.uk() {
            tpp.get_dpop_raw_with(
                &url,
                scheme,
                token,
                proofs,
                &[
                    ("x-fapi-interaction-id", interaction.as_str()),
                    ("accept", "application/json"),
                ],
                self.uk_cert(tpp),
            )
            .await?
        } else {
            tpp.get_dpop_raw(&url, scheme, token, proofs).await?
        };
        let www = r
            .headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        log.evidence(
            "resource",
            format!(
                "GET {url} Authorization: {scheme} <{}>, {} DPoP proof(s)",
                tpp.client_id,
                proofs.len()
            ),
            Some(r.status.as_u16()),
            resource_error(&r),
            www,
        );
        if self.uk() {
            self.check_interaction_id(log, &r, &interaction);
        }
        Ok(r)
    }

    /// The protected resource: UK OB's accounts endpoint on the kit's RS, else userinfo.
    pub fn resource_url(&self, tpp: &Tpp) -> String {
        if self.uk() {
            super::uk_accounts_url(&self.kit)
        } else {
            tpp.endpoint("userinfo_endpoint")
        }
    }

    /// The AS's published keys (fetched once).
    pub async fn server_keys(&self) -> anyhow::Result<&Vec<fapi_jose::Jwk>> {
        self.jwks
            .get_or_try_init(|| async {
                let uri = self
                    .c1
                    .discovery
                    .get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .context("discovery has no jwks_uri")?;
                let set: fapi_jose::Jwks = self
                    .c1
                    .http_no_cert
                    .get(uri)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                Ok::<_, anyhow::Error>(set.keys)
            })
            .await
    }

    /// A client assertion for `tpp` with claims overridden (`null` removes a claim).
    pub fn assertion(&self, tpp: &Tpp, overrides: Value) -> String {
        tpp.assertion_with(overrides)
    }
}

/// The error a resource answer names: RFC 6750 `error`, or the first UK OB `ErrorCode`.
fn resource_error(r: &Reply) -> Option<String> {
    r.str("error")
        .or_else(|| r.body["Errors"][0]["ErrorCode"].as_str())
        .map(str::to_owned)
}

async fn post(
    agent: &Customer,
    url: &str,
    fields: &[(String, String)],
) -> anyhow::Result<crate::browser::Page> {
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    agent.post(url, &refs).await
}

fn record_front(log: &mut Log, url: &str, f: &Front) {
    let short: String = url.chars().take(140).collect();
    match f {
        Front::Callback(u) => {
            let keys: Vec<String> = u
                .query_pairs()
                .map(|(k, v)| {
                    if k == "error" || k == "error_description" {
                        format!("{k}={v}")
                    } else {
                        k.into_owned()
                    }
                })
                .collect();
            log.evidence(
                "authorize",
                format!("browser GET {short}"),
                Some(303),
                crate::browser::param(u, "error"),
                Some(format!(
                    "redirected to {} with [{}]",
                    u.as_str().split('?').next().unwrap_or_default(),
                    keys.join(", ")
                )),
            );
        }
        Front::Page {
            status,
            error,
            title,
        } => log.evidence(
            "authorize",
            format!("browser GET {short}"),
            Some(*status),
            error.clone(),
            Some(format!("page shown: {title}")),
        ),
        Front::LoginPage => log.evidence(
            "authorize",
            format!("browser GET {short}"),
            Some(200),
            None,
            Some("login page shown".into()),
        ),
    }
}

/// A request summary for evidence: parameter names, with values only where they matter
/// and never secrets or assertions.
pub fn summarize(label: &str, form: &[(String, String)]) -> String {
    let shown: Vec<String> = form
        .iter()
        .map(|(k, v)| match k.as_str() {
            "client_assertion" | "request" => format!("{k}=<jwt {}>", assertion_summary(v)),
            "code" | "refresh_token" | "code_verifier" | "code_challenge" | "request_uri" => {
                format!("{k}=…")
            }
            "state" | "nonce" if v.len() > 16 => format!("{k}=<{} chars>", v.len()),
            _ => format!("{k}={}", v.chars().take(80).collect::<String>()),
        })
        .collect();
    format!("{label} {}", shown.join("&"))
}

fn assertion_summary(jwt: &str) -> String {
    let u = match fapi_jose::Unverified::parse(jwt) {
        Ok(u) => u,
        Err(_) => return "unparseable".into(),
    };
    let t = now();
    let rel = |k: &str| {
        u.claims
            .get(k)
            .and_then(|v| v.as_i64())
            .map(|x| format!("{k}={:+}s", x - t))
    };
    let mut parts = vec![format!("alg={}", u.header.alg)];
    parts.extend(["iat", "nbf", "exp"].iter().filter_map(|k| rel(k)));
    for k in ["aud", "sub"] {
        match u.claims.get(k) {
            Some(v) => parts.push(format!("{k}={v}")),
            None => parts.push(format!("no {k}")),
        }
    }
    parts.join(" ")
}

/// The kit's clients for `v`: its authentication method and sender constraint, and
/// Message Signing clients only for `signed_non_repudiation` variants (registered for
/// JARM exactly when the variant is `jarm`).
pub fn variant_clients<'k>(kit: &'k Kit, v: &Variant) -> Vec<&'k KitClient> {
    let dpop = v.sender_constrain == SenderConstrain::Dpop;
    let signed = v.fapi_request_method == RequestMethod::SignedNonRepudiation;
    kit.clients
        .iter()
        .filter(|c| {
            c.token_endpoint_auth_method == v.auth_method()
                && c.uses_dpop() == dpop
                && c.uses_message_signing() == signed
                && (!signed
                    || (c.request_object_signing
                        && (c.response_mode.as_deref() == Some("jwt")) == v.jarm()))
        })
        .collect()
}

/// Why the kit cannot run `v`: it has no client of that kind.
pub fn kit_gap(kit: &Kit, v: &Variant) -> Option<String> {
    variant_clients(kit, v).is_empty().then(|| {
        format!(
            "the kit has no {} client with {} tokens{}",
            v.auth_method(),
            if v.sender_constrain == SenderConstrain::Dpop {
                "DPoP-bound"
            } else {
                "certificate-bound"
            },
            match (v.signed(), v.jarm()) {
                (true, true) => " registered for signed request objects and JARM",
                (true, false) => " registered for signed request objects without JARM",
                _ => "",
            }
        )
    })
}

/// The authorization URL with `extra` query parameters appended.
pub fn with_query(url: &str, extra: &[(&str, &str)]) -> String {
    let mut s = url.to_owned();
    for (k, v) in extra {
        s.push(if s.contains('?') { '&' } else { '?' });
        s.push_str(&format!("{}={}", enc(k), enc(v)));
    }
    s
}
