//! Hosting the resource server (the `resource-server` crate) on its own mTLS listener.
//!
//! The RS shares no code path with the AS's handlers: it sees the AS only through the
//! shared data layer (the consent store, the revocation list, the replay store) and the
//! AS's public keys. `wekeza run` starts it in the same process on its own port;
//! `wekeza rs` runs it alone, as its own process, for deployments that scale the two
//! apart (ADR 0009).

use crate::tls::TlsInfo;
use anyhow::Context;
use authz_store::{DurableStore, EphemeralStore};
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use resource_server::jwt::{CachedConsentSource, JwtVerifier, JwtVerifierConfig};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The platform clock, as the RS reads it.
struct RsClock(Arc<dyn crate::clock::Clock>);

impl resource_server::jwt::Clock for RsClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.0.now()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// Hands the connection's client certificate to the RS as a request extension.
async fn peer_certificate(mut req: Request, next: Next) -> Response {
    let cert = req
        .extensions()
        .get::<ConnectInfo<TlsInfo>>()
        .and_then(|ConnectInfo(i)| i.client_cert.clone());
    if let Some(c) = cert {
        let der: Arc<[u8]> = Arc::from(c.as_ref());
        req.extensions_mut()
            .insert(resource_server::PeerCertificate(der));
    }
    next.run(req).await
}

pub struct RsInputs {
    pub store: Arc<dyn DurableStore>,
    pub eph: Arc<dyn EphemeralStore>,
    pub bank: Arc<dyn core_bank::CoreBank>,
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The AS issuer (`iss` of access tokens).
    pub issuer: String,
    /// This RS's base URL (`aud` of access tokens, base of links and DPoP `htu`).
    pub base_url: String,
    /// The AS's verification keys.
    pub keys: Vec<fapi_jose::Jwk>,
    /// Requests per second and burst per client; `None` disables throttling.
    pub rate_limit: Option<(u32, u32)>,
    /// Where consent use is recorded ("last used" on the dashboard).
    pub auth: Arc<dyn authz_store::AuthStore>,
    /// Event notifications: the API and, in this process, the dispatcher (ADR 0012).
    pub events: Option<RsEvents>,
    /// Sandbox deployment (sandbox tools' endpoints) and the expiry sweep / retention
    /// worker's settings (ADR 0018).
    pub sandbox: bool,
    pub housekeeping: resource_server::alerts::Housekeeping,
    /// Plans, rate limits, quotas and metering in front of every route (ADR 0015).
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
    /// `x-jws-signature` on payment requests and responses (ADR 0017).
    pub jws: Option<Arc<resource_server::jws_signature::JwsSignatures>>,
}

/// The `x-jws-signature` settings of `config`, responses signed with `key` (PS256) or
/// `ec_key` (ES256, answering ES256-signed requests, ADR 0020) as `issuer`.
pub fn jws_from_config(
    config: &crate::config::Config,
    key: Arc<fapi_jose::SigningKey>,
    ec_key: Arc<fapi_jose::SigningKey>,
    issuer: &str,
) -> Arc<resource_server::jws_signature::JwsSignatures> {
    Arc::new(
        resource_server::jws_signature::JwsSignatures::new(
            key,
            issuer,
            config.jws_trust_anchor.clone(),
            config.jws_signature_required,
        )
        .with_ec_key(ec_key),
    )
}

/// What the event endpoints and the dispatcher need.
pub struct RsEvents {
    /// Run the dispatcher here, not only the API.
    pub dispatch: bool,
    pub store: Arc<dyn authz_store::EventStore>,
    pub key: Arc<fapi_jose::SigningKey>,
    pub dispatcher: resource_server::event_dispatch::DispatcherConfig,
}

impl RsEvents {
    /// From the configuration; in sandbox mode the sandbox CA is trusted for callbacks,
    /// so local receivers can use a certificate it issued.
    pub fn from_config(
        config: &crate::config::Config,
        store: Arc<dyn authz_store::EventStore>,
        key: Arc<fapi_jose::SigningKey>,
    ) -> anyhow::Result<Self> {
        use resource_server::event_dispatch::{CallbackPolicy, DispatcherConfig};
        let mut extra_roots_pem = Vec::new();
        if config.mode == crate::config::Mode::Sandbox {
            let ca = config.certs_dir.join("ca.pem");
            extra_roots_pem
                .push(std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?);
        }
        Ok(Self {
            dispatch: config.events_dispatcher,
            store,
            key,
            dispatcher: DispatcherConfig {
                policy: CallbackPolicy {
                    allow_private: config.events_private_callbacks_allowed(),
                },
                retry_horizon_ms: config.events_retry_horizon_secs * 1000,
                retry_base_ms: config.events_retry_base_ms,
                timeout_ms: config.events_delivery_timeout_ms,
                poll_interval_ms: config.events_poll_interval_ms,
                extra_roots_pem,
                ..DispatcherConfig::default()
            },
        })
    }
}

/// The expiry sweep / retention settings of `config`.
pub fn housekeeping_of(config: &crate::config::Config) -> resource_server::alerts::Housekeeping {
    resource_server::alerts::Housekeeping {
        every: Duration::from_millis(config.events_housekeeping_interval_ms),
        retention: Duration::from_secs(
            u64::try_from(config.events_retention_days).unwrap_or(30) * 24 * 3600,
        ),
        payment_consents: config.payment_consent_lifetimes(),
    }
}

/// Serve the RS on `tcp` until `stop` turns true. Returns the verifier, so its keys can
/// be refreshed.
pub fn spawn(
    tcp: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    i: RsInputs,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<JwtVerifier>, tokio::task::JoinHandle<()>)> {
    let clock: Arc<dyn resource_server::jwt::Clock> = Arc::new(RsClock(i.clock.clone()));
    let events_issuer = i.issuer.clone();
    let cached = Arc::new(CachedConsentSource::new(
        Arc::new(resource_server::StoreConsentSource::new(i.store.clone())),
        Duration::from_secs(1),
    ));
    let consents = Arc::new(crate::consent_usage::UsageRecorder::new(
        cached,
        i.auth,
        i.eph.clone(),
        i.clock.clone(),
    ));
    let verifier = Arc::new(
        JwtVerifier::new(
            JwtVerifierConfig::new(i.issuer, i.base_url.clone()),
            i.keys,
            consents,
            clock.clone(),
        )
        .with_replay_store(i.eph),
    );
    // Balances from the durable ledger (payments change them); clearing of payments to
    // other banks runs in every RS process (each payment moves once, ADR 0011).
    let bank: Arc<dyn core_bank::CoreBank> = Arc::new(resource_server::ledger::LedgerBank::new(
        i.bank,
        i.store.clone(),
    ));
    let clearing = resource_server::payments::spawn_clearing_worker(
        i.store.clone(),
        clock.clone(),
        Duration::from_secs(1),
    );
    let lifetimes = i.housekeeping.payment_consents;
    let housekeeping =
        resource_server::alerts::spawn_housekeeping(i.store.clone(), clock.clone(), i.housekeeping);
    let mut dispatcher = None;
    let events = match i.events {
        Some(ev) => {
            let signer = Arc::new(resource_server::event_dispatch::SetSigner {
                key: ev.key,
                issuer: events_issuer.clone(),
                rs_base: i.base_url.clone(),
            });
            if ev.dispatch {
                dispatcher = Some(resource_server::event_dispatch::Dispatcher::new(
                    ev.store.clone(),
                    signer.clone(),
                    clock.clone(),
                    ev.dispatcher.clone(),
                )?);
            }
            Some(resource_server::events::EventsState {
                store: ev.store,
                policy: ev.dispatcher.policy,
                signer,
            })
        }
        None => None,
    };
    // The plan applies once the token is verified (its client_id is then known).
    let gated: Arc<dyn resource_server::TokenVerifier> = match &i.gateway {
        Some(_) => Arc::new(crate::gateway::GatedVerifier(verifier.clone())),
        None => verifier.clone(),
    };
    let mut state = resource_server::AppState::new(bank, gated, i.store, clock, i.base_url);
    state.events = events;
    state.sandbox = i.sandbox;
    state.jws = i.jws;
    state.payment_consent_lifetimes = lifetimes;
    state.rate_limit = i
        .rate_limit
        .map(|(per_second, burst)| resource_server::RateLimit { per_second, burst });
    let mut app = resource_server::router(state).route_layer(axum::middleware::from_fn_with_state(
        "rs",
        crate::metrics::track,
    ));
    if let Some(gw) = i.gateway {
        app = app.route_layer(axum::middleware::from_fn_with_state(
            crate::gateway::LayerCtx {
                gateway: gw,
                server: "rs",
                flavour: crate::gateway::Flavour::OpenBanking,
            },
            crate::gateway::layer,
        ));
    }
    let app = app.layer(axum::middleware::from_fn(peer_certificate));
    let listener = crate::tls::TlsListener::spawn(tcp, tls).context("resource server TLS")?;
    let dispatch =
        dispatcher.map(|d| resource_server::event_dispatch::spawn_dispatcher(d, stop.clone()));
    let task = tokio::spawn(async move {
        let svc = app.into_make_service_with_connect_info::<TlsInfo>();
        let until = async move {
            let _ = stop.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(listener, svc)
            .with_graceful_shutdown(until)
            .await
        {
            tracing::error!(error = %e, "resource server stopped with an error");
        }
        clearing.abort();
        housekeeping.abort();
        if let Some(d) = dispatch {
            let _ = d.await;
        }
    });
    Ok((verifier, task))
}

/// The resource server running on its own (`wekeza rs`).
pub struct StandaloneRs {
    pub addr: std::net::SocketAddr,
    pub base_url: String,
    shutdown: watch::Sender<bool>,
    serve: tokio::task::JoinHandle<()>,
    refresh: tokio::task::JoinHandle<()>,
    metrics: Option<tokio::task::JoinHandle<()>>,
    /// The RS process's gateway (its metering writer flushes at shutdown).
    pub gateway: Arc<crate::gateway::Gateway>,
    gateway_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl StandaloneRs {
    /// Stop accepting, let in-flight requests finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.refresh.abort();
        let _ = self.serve.await;
        if let Some(m) = self.metrics {
            let _ = m.await;
        }
        for t in self.gateway_tasks {
            let _ = t.await;
        }
    }
}

/// How often the AS's JWKS is fetched again (picks up rotated keys).
const JWKS_REFRESH: Duration = Duration::from_secs(60);

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> anyhow::Result<Vec<fapi_jose::Jwk>> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<fapi_jose::Jwk>,
    }
    let set: Set = http
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(!set.keys.is_empty(), "the JWKS at {url} is empty");
    Ok(set.keys)
}

fn without_kid(keys: Vec<fapi_jose::Jwk>, kid: &str) -> Vec<fapi_jose::Jwk> {
    keys.into_iter()
        .filter(|k| k.kid.as_deref() != Some(kid))
        .collect()
}

/// Start the resource server alone: the same stores as the AS, the AS's keys fetched from
/// its JWKS over TLS, TLS material from the sandbox certificates (or the configured files).
pub async fn start_standalone(
    config: crate::config::Config,
    clock: Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<StandaloneRs> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.join("\n  ")))?;
    let (sql, eph) = crate::connect_sql(&config).await?;
    let auth: Arc<dyn authz_store::AuthStore> = Arc::new(sql.clone());
    let events_store: Arc<dyn authz_store::EventStore> = Arc::new(sql.clone());
    let usage: Arc<dyn authz_store::UsageStore> = Arc::new(sql.clone());
    let store: Arc<dyn DurableStore> = Arc::new(sql);
    let events_key = Arc::new(crate::event_keys::load_or_create(
        &config.keys_dir,
        clock.now(),
    )?);
    let (jws_key, jws_ec_key) =
        crate::event_keys::load_or_create_jws(&config.keys_dir, clock.now())?;
    let (jws_key, jws_ec_key) = (Arc::new(jws_key), Arc::new(jws_ec_key));
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| {
            format!(
                "reading {} (start the platform once with `wekeza run` to create it)",
                p.display()
            )
        })
    };
    let (chain_pem, key_pem, ca_pem) = match config.mode {
        crate::config::Mode::Sandbox => (
            read(&config.certs_dir.join("server.pem"))?,
            read(&config.certs_dir.join("server.key"))?,
            read(&config.certs_dir.join("ca.pem"))?,
        ),
        crate::config::Mode::Production => {
            let file = |p: &Option<std::path::PathBuf>| -> anyhow::Result<String> {
                read(p.as_deref().context("missing file setting")?)
            };
            (
                file(&config.tls_cert_file)?,
                file(&config.tls_key_file)?,
                file(&config.client_ca_file)?,
            )
        }
    };
    let chain = crate::tls::load_chain(chain_pem.as_bytes())?;
    let key = crate::tls::load_key(key_pem.as_bytes())?;
    let tls =
        crate::tls::server_config(chain, key, Some(crate::tls::load_chain(ca_pem.as_bytes())?))?;

    let host = &config.public_host;
    let issuer = format!("https://{host}:{}", config.web_port);
    let jwks_url = format!("{issuer}/jwks");
    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if config.mode == crate::config::Mode::Sandbox {
        http = http.add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?);
    }
    let http = http.build()?;
    // The AS may still be starting: try for a while.
    let mut keys = None;
    for _ in 0..50 {
        match fetch_jwks(&http, &jwks_url).await {
            Ok(k) => {
                keys = Some(k);
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "authorization server JWKS not available yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let keys =
        keys.with_context(|| format!("fetching the authorization server's keys from {jwks_url}"))?;
    // The JWKS also publishes the events and response-signing keys; access tokens are
    // never accepted under them.
    let keys = without_kid(
        without_kid(without_kid(keys, events_key.kid()), jws_key.kid()),
        jws_ec_key.kid(),
    );

    let bind: std::net::IpAddr = config.bind_address.parse()?;
    let tcp = TcpListener::bind((bind, config.rs_port))
        .await
        .with_context(|| format!("binding resource server port {}", config.rs_port))?;
    let addr = tcp.local_addr()?;
    let base_url = format!("https://{host}:{}", addr.port());
    let bank = crate::sandbox_bank(
        &*store,
        clock.now(),
        config.sandbox_load_customers,
        config.sandbox_load_accounts,
    )
    .await?;
    let (tx, rx) = watch::channel(false);
    // `wekeza rs` is its own process: its metrics are scraped on their own port.
    let metrics = if config.rs_metrics_port != 0 {
        let handle = crate::metrics::install()?;
        let m = TcpListener::bind((bind, config.rs_metrics_port))
            .await
            .with_context(|| format!("binding rs_metrics_port {}", config.rs_metrics_port))?;
        Some(crate::metrics::serve(m, handle, rx.clone()))
    } else {
        None
    };
    let (gateway, gateway_tasks) =
        crate::gateway::Gateway::start(&config, usage, clock.clone(), rx.clone()).await?;
    let jws = jws_from_config(&config, jws_key.clone(), jws_ec_key.clone(), &issuer);
    let (verifier, task) = spawn(
        tcp,
        tls,
        RsInputs {
            store,
            eph,
            bank,
            clock,
            issuer,
            base_url: base_url.clone(),
            keys,
            rate_limit: config.rs_rate_limit(),
            auth,
            events: Some(RsEvents::from_config(
                &config,
                events_store,
                events_key.clone(),
            )?),
            sandbox: config.mode == crate::config::Mode::Sandbox,
            housekeeping: housekeeping_of(&config),
            gateway: Some(gateway.clone()),
            jws: Some(jws),
        },
        rx,
    )?;
    let events_kid = events_key.kid().to_owned();
    let jws_kids = [jws_key.kid().to_owned(), jws_ec_key.kid().to_owned()];
    let refresh = tokio::spawn(async move {
        loop {
            tokio::time::sleep(JWKS_REFRESH).await;
            match fetch_jwks(&http, &jwks_url).await {
                Ok(k) => verifier.set_keys(
                    jws_kids
                        .iter()
                        .fold(without_kid(k, &events_kid), |k, kid| without_kid(k, kid)),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys")
                }
            }
        }
    });
    Ok(StandaloneRs {
        addr,
        base_url,
        shutdown: tx,
        serve: task,
        metrics,
        refresh,
        gateway,
        gateway_tasks,
    })
}
