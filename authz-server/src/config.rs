//! Configuration: defaults, then an optional TOML file, then `WEKEZA_*` environment
//! variables (plus the conventional `DATABASE_URL` / `REDIS_URL`). Unknown keys are
//! refused, and [`Config::validate`] turns the raw values into a checked configuration
//! with every problem listed at once.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Generates dev PKI, keys, sandbox TPPs and a sandbox customer at first start.
    Sandbox,
    /// Generates nothing: certificates, keys and clients must be provided.
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mode: Mode,
    /// Host name in every URL we publish. `localhost`, not an IP: WebAuthn needs a name.
    pub public_host: String,
    pub bind_address: String,
    /// Browser-facing listener (issuer, authorization endpoint, login and consent pages).
    pub web_port: u16,
    /// Back-channel listener that asks for client certificates (PAR, token, userinfo...).
    pub mtls_port: u16,
    /// Resource server listener.
    pub rs_port: u16,
    /// Resource server throttling per client: sustained requests per second (0 = off)
    /// and burst. Over the limit a TPP gets 429 with `Retry-After`.
    pub rs_rate_limit_per_second: u32,
    pub rs_rate_limit_burst: u32,
    pub database_url: String,
    /// PostgreSQL schema to use (created if missing); isolates test runs on one database.
    pub database_schema: Option<String>,
    pub redis_url: Option<String>,
    pub redis_key_prefix: String,
    pub keys_dir: PathBuf,
    pub certs_dir: PathBuf,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub code_ttl_secs: i64,
    pub par_ttl_secs: i64,
    pub interaction_ttl_secs: i64,
    pub consent_ttl_secs: i64,
    pub log_format: LogFormat,
    /// Sandbox only: extra customers `loadtest-0001`.. sharing the sandbox customer's
    /// password and TOTP secret, so a load test can run many logins per TOTP time-step
    /// (each step is accepted once per customer).
    pub sandbox_load_customers: u32,
    /// PEM bundle of CAs whose client certificates may authenticate (production mode).
    pub client_ca_file: Option<PathBuf>,
    /// Server certificate chain and key (production mode; sandbox generates them).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// RFC 9449 §8/§9: require a server-issued nonce in every DPoP proof (PAR, token,
    /// userinfo). Off by default (FAPI 2.0 §5.3.2.1-10: MAY).
    pub dpop_nonce_required: bool,
    /// Secret the stateless DPoP nonces are derived from (at least 32 characters). Scaled
    /// deployments with `dpop_nonce_required` must give every instance the same value;
    /// unset, each instance makes a random one at start (right for one instance only).
    pub dpop_nonce_secret: Option<String>,
    /// Event notification callbacks on loopback, private or link-local addresses
    /// (`WEKEZA_EVENTS_ALLOW_PRIVATE_CALLBACKS`). Unset: allowed in sandbox mode (local
    /// receivers), refused in production mode (server-side request forgery).
    pub events_allow_private_callbacks: Option<bool>,
    /// How long a notification is retried before it is dead-lettered (default 24 h).
    pub events_retry_horizon_secs: i64,
    /// First retry delay; doubled per attempt up to an hour, with jitter.
    pub events_retry_base_ms: i64,
    /// Timeout of one delivery attempt.
    pub events_delivery_timeout_ms: u64,
    /// How often an idle dispatcher looks for due deliveries.
    pub events_poll_interval_ms: u64,
    /// Run the event dispatcher in this resource-server process (default). Off for
    /// instances that should only serve the API while others deliver.
    pub events_dispatcher: bool,
    /// Dynamic client registration: expected `iss` of software statements (sandbox
    /// default: the sandbox directory), the trust anchor's JWKS file (required to enable
    /// registration in production; sandbox default: the generated sandbox directory key),
    /// and the oldest statement accepted.
    pub software_statement_issuer: Option<String>,
    pub software_statement_jwks_file: Option<PathBuf>,
    pub software_statement_max_age_secs: i64,
    /// Prometheus `/metrics` on plain HTTP at `bind_address:metrics_port`; 0 = off.
    pub metrics_port: u16,
    /// The same for the resource server when it runs as its own process (`wekeza rs`,
    /// started by `wekeza run`); 0 = off.
    pub rs_metrics_port: u16,
    /// Delivered, acknowledged, dead-lettered and suppressed event deliveries, their
    /// delivery log and their events are deleted after this many days (default 30).
    pub events_retention_days: i64,
    /// How often each resource-server process sweeps expired consents (their EXPD
    /// events) and applies the retention period.
    pub events_housekeeping_interval_ms: u64,
    /// Payment consents (domestic and file) still awaiting authorisation this long after
    /// their creation lapse to `RJCT` in the housekeeping sweep, and can no longer be
    /// authorised (ADR 0019; `WEKEZA_PAYMENT_CONSENT_AUTH_WINDOW_SECS`, default 3600).
    pub payment_consent_auth_window_secs: i64,
    /// Authorised payment consents not used this long after their authorisation lapse to
    /// `EXPD` (`WEKEZA_PAYMENT_CONSENT_AUTHORISED_TTL_SECS`, default 86400).
    pub payment_consent_authorised_ttl_secs: i64,
    /// Gateway plans by name (issue 9, ADR 0015): `sandbox` (every client without a
    /// `client_plans` row), `standard`, `premium`. Environment override of one value:
    /// `WEKEZA_PLANS='{standard={client_rate_per_second=50.0}}'` (merged into the defaults).
    pub plans: BTreeMap<String, PlanConfig>,
    /// Rate limits and quotas in front of every API (`WEKEZA_GATEWAY_ENABLED`). Off,
    /// calls are still metered.
    pub gateway_enabled: bool,
    /// Requests that identify no client (refused before or at authentication), per
    /// certificate thumbprint, or source address without a certificate, per instance.
    pub gateway_unauthenticated_per_second: f64,
    pub gateway_unauthenticated_burst: u32,
    /// How long a client's plan row is cached per instance.
    pub plan_cache_secs: u64,
    /// Metering of every API call (`api_calls` table), written off the request path.
    pub metering_enabled: bool,
    /// Calls waiting for the writer; beyond it calls are dropped and counted
    /// (`wekeza_metering_dropped_total`).
    pub metering_queue_capacity: usize,
    /// Most rows per insert, and how long the writer waits to fill a batch.
    pub metering_batch_size: usize,
    pub metering_flush_ms: u64,
    /// Metered calls older than this are deleted (hourly).
    pub metering_retention_days: u32,
    /// ISO 4217 currency of plan prices and statements.
    pub billing_currency: String,
    /// UK OB `x-jws-signature` on payment requests (ADR 0017): when true (default, sandbox
    /// too) a `POST` to the payment-initiation API without a valid signature by one of
    /// the TPP's registered keys is refused with 400 `UK.OBIE.Signature.Missing`/`Invalid`.
    /// When false an absent signature is accepted; a present one is still verified.
    pub jws_signature_required: bool,
    /// The trust anchor every `x-jws-signature` names in `http://openbanking.org.uk/tan`
    /// (ours in responses, the TPP's in requests). Sandbox: the sandbox directory.
    pub jws_trust_anchor: String,
    /// Sandbox load tests only (`WEKEZA_SANDBOX_LOAD_ACCOUNTS`): 0 = the load customers
    /// share the sandbox customer's accounts (one hot debtor account); N = the bank
    /// generates N more customers and load customer i banks as customer i mod N, so
    /// payments spread over N debtor accounts.
    pub sandbox_load_accounts: u32,
}

/// One gateway plan. Rates of 0 mean unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Per client: sustained requests per second (fractions allowed) and burst.
    pub client_rate_per_second: f64,
    pub client_burst: u32,
    /// Per org (all its clients together).
    pub org_rate_per_second: f64,
    pub org_burst: u32,
    /// Calls per org and UTC day; 0 = unlimited.
    pub org_daily_quota: u64,
    /// Statement price per 1,000 billable calls, in minor units of `billing_currency`.
    pub price_per_1000_minor: u64,
}

impl PlanConfig {
    fn new(rate: f64, burst: u32, org_rate: f64, org_burst: u32, quota: u64, price: u64) -> Self {
        Self {
            client_rate_per_second: rate,
            client_burst: burst,
            org_rate_per_second: org_rate,
            org_burst,
            org_daily_quota: quota,
            price_per_1000_minor: price,
        }
    }
}

/// The three plans as shipped (tuned for a sandbox that also runs the load tool with
/// `WEKEZA_GATEWAY_ENABLED=false`).
pub fn default_plans() -> BTreeMap<String, PlanConfig> {
    BTreeMap::from([
        (
            "sandbox".to_owned(),
            PlanConfig::new(50.0, 100, 100.0, 200, 100_000, 0),
        ),
        (
            "standard".to_owned(),
            PlanConfig::new(200.0, 400, 500.0, 1_000, 2_000_000, 50),
        ),
        (
            "premium".to_owned(),
            PlanConfig::new(1_000.0, 2_000, 2_500.0, 5_000, 0, 30),
        ),
    ])
}

impl std::fmt::Debug for Config {
    // The database and Redis URLs may carry passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("public_host", &self.public_host)
            .field("web_port", &self.web_port)
            .field("mtls_port", &self.mtls_port)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Sandbox,
            public_host: "localhost".into(),
            bind_address: "127.0.0.1".into(),
            web_port: 8443,
            mtls_port: 8444,
            rs_port: 8445,
            rs_rate_limit_per_second: 0,
            rs_rate_limit_burst: 0,
            database_url: "sqlite://data/wekeza.db".into(),
            database_schema: None,
            redis_url: None,
            redis_key_prefix: "wekeza".into(),
            keys_dir: "keys".into(),
            certs_dir: "certs".into(),
            access_token_ttl_secs: 300,
            refresh_token_ttl_secs: 90 * 24 * 3600,
            id_token_ttl_secs: 300,
            code_ttl_secs: 60,
            par_ttl_secs: 90,
            interaction_ttl_secs: 900,
            consent_ttl_secs: 90 * 24 * 3600,
            log_format: LogFormat::Text,
            sandbox_load_customers: 0,
            client_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            dpop_nonce_required: false,
            dpop_nonce_secret: None,
            events_allow_private_callbacks: None,
            events_retry_horizon_secs: 24 * 3600,
            events_retry_base_ms: 1000,
            events_delivery_timeout_ms: 10_000,
            events_poll_interval_ms: 200,
            events_dispatcher: true,
            software_statement_issuer: None,
            software_statement_jwks_file: None,
            software_statement_max_age_secs: 24 * 3600,
            metrics_port: 0,
            rs_metrics_port: 0,
            events_retention_days: 30,
            events_housekeeping_interval_ms: 5_000,
            payment_consent_auth_window_secs: 3600,
            payment_consent_authorised_ttl_secs: 24 * 3600,
            plans: default_plans(),
            gateway_enabled: true,
            gateway_unauthenticated_per_second: 50.0,
            gateway_unauthenticated_burst: 100,
            plan_cache_secs: 5,
            metering_enabled: true,
            metering_queue_capacity: 10_000,
            metering_batch_size: 500,
            metering_flush_ms: 250,
            metering_retention_days: 90,
            billing_currency: "KES".into(),
            jws_signature_required: true,
            jws_trust_anchor: crate::provision::SANDBOX_TRUST_ANCHOR.into(),
            sandbox_load_accounts: 0,
        }
    }
}

impl Config {
    /// The payment consent lifetimes (ADR 0019).
    pub fn payment_consent_lifetimes(
        &self,
    ) -> openbanking::consent_lifetime::PaymentConsentLifetimes {
        openbanking::consent_lifetime::PaymentConsentLifetimes {
            auth_window_secs: self.payment_consent_auth_window_secs,
            authorised_ttl_secs: self.payment_consent_authorised_ttl_secs,
        }
    }

    /// `(per second, burst)` for the resource server, `None` when throttling is off.
    pub fn rs_rate_limit(&self) -> Option<(u32, u32)> {
        (self.rs_rate_limit_per_second > 0).then(|| {
            (
                self.rs_rate_limit_per_second,
                self.rs_rate_limit_burst.max(self.rs_rate_limit_per_second),
            )
        })
    }

    /// Plans, gateway and metering settings (issue 9).
    fn gateway_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !self.plans.contains_key(authz_store::DEFAULT_PLAN) {
            errs.push("plans must define `sandbox` (the plan of clients without one)".into());
        }
        for (name, p) in &self.plans {
            for (what, rate, burst) in [
                ("client", p.client_rate_per_second, p.client_burst),
                ("org", p.org_rate_per_second, p.org_burst),
            ] {
                if !rate.is_finite() || rate < 0.0 || (rate > 0.0 && burst == 0) {
                    errs.push(format!(
                        "plans.{name}: {what} rate must be 0 (unlimited) or positive with a burst of at least 1"
                    ));
                }
            }
        }
        let r = self.gateway_unauthenticated_per_second;
        if !r.is_finite() || r < 0.0 || (r > 0.0 && self.gateway_unauthenticated_burst == 0) {
            errs.push("gateway_unauthenticated_per_second must be 0 (off) or positive with a burst of at least 1".into());
        }
        if !(1..=1_000_000).contains(&self.metering_queue_capacity)
            || !(1..=10_000).contains(&self.metering_batch_size)
            || !(10..=60_000).contains(&self.metering_flush_ms)
        {
            errs.push("metering_queue_capacity must be 1..=1000000, metering_batch_size 1..=10000, metering_flush_ms 10..=60000".into());
        }
        if !(1..=3650).contains(&self.metering_retention_days) {
            errs.push("metering_retention_days must be 1..=3650".into());
        }
        if self.plan_cache_secs > 3600 {
            errs.push("plan_cache_secs must be at most 3600".into());
        }
        if self.billing_currency.len() != 3
            || !self
                .billing_currency
                .bytes()
                .all(|b| b.is_ascii_uppercase())
        {
            errs.push("billing_currency must be an ISO 4217 code such as KES".into());
        }
        errs
    }

    /// Whether event callbacks may target internal addresses (see the field).
    pub fn events_private_callbacks_allowed(&self) -> bool {
        self.events_allow_private_callbacks
            .unwrap_or(self.mode == Mode::Sandbox)
    }

    /// Load from defaults, `file` (if it exists, or must exist when given explicitly) and env.
    pub fn load(file: Option<&Path>) -> Result<Self, Vec<String>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) if !f.exists() => {
                return Err(vec![format!("config file {} does not exist", f.display())]);
            }
            Some(f) => fig = fig.merge(Toml::file(f)),
            None if Path::new("wekeza.toml").exists() => fig = fig.merge(Toml::file("wekeza.toml")),
            None => {}
        }
        fig = fig
            .merge(Env::raw().only(&["database_url", "redis_url"]))
            // WEKEZA_TEST_* variables belong to the test harness, not the server.
            .merge(Env::prefixed("WEKEZA_").filter(|k| !k.as_str().starts_with("test_")));
        let cfg: Config = fig
            .extract()
            .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every rule, every problem reported together.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        let mut range = |name: &str, v: i64, lo: i64, hi: i64, why: &str| {
            if !(lo..=hi).contains(&v) {
                errs.push(format!("{name} = {v} is outside {lo}..={hi} ({why})"));
            }
        };
        range(
            "access_token_ttl_secs",
            self.access_token_ttl_secs,
            30,
            3600,
            "short-lived sender-constrained tokens",
        );
        range(
            "id_token_ttl_secs",
            self.id_token_ttl_secs,
            30,
            3600,
            "ID tokens are short-lived",
        );
        range(
            "code_ttl_secs",
            self.code_ttl_secs,
            5,
            60,
            "FAPI 2.0 §5.3.2.1-11: at most 60 s",
        );
        range(
            "par_ttl_secs",
            self.par_ttl_secs,
            30,
            599,
            "FAPI 2.0 §5.3.2.2-12: under 600 s, 30 s or more for slow devices",
        );
        range(
            "interaction_ttl_secs",
            self.interaction_ttl_secs,
            60,
            3600,
            "time a customer has to log in and decide",
        );
        range(
            "refresh_token_ttl_secs",
            self.refresh_token_ttl_secs,
            300,
            400 * 24 * 3600,
            "refresh tokens live as long as consents",
        );
        range(
            "consent_ttl_secs",
            self.consent_ttl_secs,
            300,
            400 * 24 * 3600,
            "consent expiry",
        );
        range(
            "events_retry_horizon_secs",
            self.events_retry_horizon_secs,
            60,
            30 * 24 * 3600,
            "how long notifications are retried",
        );
        range(
            "events_retention_days",
            self.events_retention_days,
            1,
            3650,
            "how long finished event deliveries are kept",
        );
        range(
            "events_housekeeping_interval_ms",
            i64::try_from(self.events_housekeeping_interval_ms).unwrap_or(i64::MAX),
            10,
            3_600_000,
            "expiry sweep and retention interval",
        );
        range(
            "payment_consent_auth_window_secs",
            self.payment_consent_auth_window_secs,
            60,
            7 * 24 * 3600,
            "how long a payment consent waits for authorisation",
        );
        range(
            "payment_consent_authorised_ttl_secs",
            self.payment_consent_authorised_ttl_secs,
            60,
            90 * 24 * 3600,
            "how long an authorised payment consent stays usable",
        );
        range(
            "events_retry_base_ms",
            self.events_retry_base_ms,
            10,
            600_000,
            "first retry delay",
        );
        if self.public_host.is_empty() || self.public_host.contains(['/', ':', ' ']) {
            errs.push(format!(
                "public_host {:?} must be a bare host name",
                self.public_host
            ));
        }
        if self.public_host.parse::<std::net::IpAddr>().is_ok() {
            errs.push("public_host must be a DNS name such as localhost, not an IP address (WebAuthn needs one)".into());
        }
        if self.bind_address.parse::<std::net::IpAddr>().is_err() {
            errs.push(format!(
                "bind_address {:?} is not an IP address",
                self.bind_address
            ));
        }
        if self.web_port != 0
            && (self.web_port == self.mtls_port
                || self.web_port == self.rs_port
                || self.mtls_port == self.rs_port)
        {
            errs.push("web_port, mtls_port and rs_port must differ".into());
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            errs.push("database_url must start with sqlite:, postgres:// or postgresql://".into());
        }
        if let Some(r) = &self.redis_url
            && !(r.starts_with("redis://") || r.starts_with("rediss://"))
        {
            errs.push("redis_url must start with redis:// or rediss://".into());
        }
        if self
            .dpop_nonce_secret
            .as_ref()
            .is_some_and(|s| s.len() < 32)
        {
            errs.push("dpop_nonce_secret must be at least 32 characters".into());
        }
        if !(100..=120_000).contains(&self.events_delivery_timeout_ms)
            || !(10..=60_000).contains(&self.events_poll_interval_ms)
        {
            errs.push("events_delivery_timeout_ms must be 100..=120000 and events_poll_interval_ms 10..=60000".into());
        }
        for (name, port) in [
            ("metrics_port", self.metrics_port),
            ("rs_metrics_port", self.rs_metrics_port),
        ] {
            if port != 0 && [self.web_port, self.mtls_port, self.rs_port].contains(&port) {
                errs.push(format!(
                    "{name} must differ from web_port, mtls_port and rs_port"
                ));
            }
        }
        if self.metrics_port != 0 && self.metrics_port == self.rs_metrics_port {
            errs.push("metrics_port and rs_metrics_port must differ".into());
        }
        if !(60..=400 * 24 * 3600).contains(&self.software_statement_max_age_secs) {
            errs.push("software_statement_max_age_secs must be 60 to 34560000".into());
        }
        if let Some(p) = &self.software_statement_jwks_file {
            if !p.exists() {
                errs.push(format!(
                    "software_statement_jwks_file {} does not exist",
                    p.display()
                ));
            }
            if self.mode == Mode::Production && self.software_statement_issuer.is_none() {
                errs.push(
                    "software_statement_issuer is required with software_statement_jwks_file"
                        .into(),
                );
            }
        }
        errs.extend(self.gateway_problems());
        if self.sandbox_load_customers > 100_000 {
            errs.push("sandbox_load_customers must be at most 100000".into());
        }
        if self.sandbox_load_accounts > 10_000 {
            errs.push("sandbox_load_accounts must be at most 10000".into());
        }
        if self.mode == Mode::Production {
            for (name, v) in [
                ("client_ca_file", &self.client_ca_file),
                ("tls_cert_file", &self.tls_cert_file),
                ("tls_key_file", &self.tls_key_file),
            ] {
                match v {
                    None => errs.push(format!("{name} is required in production mode")),
                    Some(p) if !p.exists() => {
                        errs.push(format!("{name} {} does not exist", p.display()))
                    }
                    Some(_) => {}
                }
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_listed() {
        assert!(Config::default().validate().is_ok());
        let bad = Config {
            code_ttl_secs: 120,
            par_ttl_secs: 600,
            public_host: "127.0.0.1".into(),
            database_url: "mysql://x".into(),
            dpop_nonce_secret: Some("too short".into()),
            ..Config::default()
        };
        let errs = bad.validate().err().unwrap_or_default();
        assert_eq!(errs.len(), 5, "{errs:?}");
        let prod = Config {
            mode: Mode::Production,
            ..Config::default()
        };
        assert_eq!(prod.validate().err().unwrap_or_default().len(), 3);
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn one_plan_value_merges_over_the_defaults_and_plans_are_checked() {
        use std::str::FromStr;
        // What `WEKEZA_PLANS='{standard={client_rate_per_second=7.5}}'` provides.
        let v = figment::value::Value::from_str("{standard={client_rate_per_second=7.5}}").unwrap();
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Serialized::default("plans", v))
            .extract()
            .unwrap();
        assert_eq!(cfg.plans["standard"].client_rate_per_second, 7.5);
        assert_eq!(cfg.plans["standard"].client_burst, 400);
        assert_eq!(cfg.plans.len(), 3);
        let mut bad = Config::default();
        bad.plans.remove("sandbox");
        if let Some(p) = bad.plans.get_mut("premium") {
            p.client_burst = 0;
        }
        bad.metering_retention_days = 0;
        bad.billing_currency = "kes".into();
        assert_eq!(bad.validate().err().unwrap_or_default().len(), 4);
    }
}
