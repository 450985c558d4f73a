//! The Wekeza authorization server: HTTP endpoints, TLS listeners, storage wiring and
//! sandbox provisioning around the protocol rules in `authz-core`.

pub mod client_auth;
pub mod clock;
pub mod config;
pub mod consent_usage;
pub mod dpop;
pub mod event_keys;
pub mod gateway;
pub mod http;
pub mod issue;
pub mod keys;
pub mod logo;
pub mod metrics;
pub mod ob;
pub mod ob_file_payments;
mod ob_payment_consent;
pub mod ob_payments;
pub mod passkey;
pub mod password;
pub mod provision;
pub mod routes;
pub mod rs_host;
pub mod secrets;
pub mod signin;
pub mod state;
pub mod tls;
pub mod usage;

use crate::clock::Clock;
use crate::config::{Config, Mode};
use crate::keys::KeyRing;
use crate::state::AppState;
use anyhow::Context;
use authz_store::{DurableStore, EphemeralStore, RedisEphemeral, SqlStore};
use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::set_header::SetResponseHeaderLayer;

/// `bytes` of randomness, base64url: codes, request_uris, ids (≥ 128 bits where it matters).
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    // aws-lc's RNG only fails if the OS has no entropy source, in which case nothing is safe.
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        tracing::error!("system random number generator failed");
        std::process::abort();
    }
    fapi_jose::b64(&b)
}

/// A readable random password for the sandbox customer.
pub fn random_password() -> String {
    random_token(12).replace(['-', '_'], "x")
}

/// Digest under which bearer artefacts are stored (never the raw value).
pub fn digest(s: &str) -> String {
    fapi_jose::sha256_b64(s.as_bytes())
}

pub struct Platform {
    pub state: Arc<AppState>,
    pub web_addr: SocketAddr,
    pub mtls_addr: SocketAddr,
    /// The resource server's base URL (`aud` of access tokens).
    pub rs_base: String,
    pub kit: Option<provision::Kit>,
    pub kit_path: Option<PathBuf>,
    /// The Prometheus scrape listener (`metrics_port`), when on.
    pub metrics_addr: Option<SocketAddr>,
    /// Rate limits, quotas and metering of the AS back channel and the in-process RS.
    pub gateway: Arc<gateway::Gateway>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Platform {
    /// Stop accepting, let in-flight requests finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Open the durable SQL store (creating a SQLite file's folder) and the ephemeral store
/// (Redis when configured, else the same database).
pub(crate) async fn connect_sql(
    cfg: &Config,
) -> anyhow::Result<(SqlStore, Arc<dyn EphemeralStore>)> {
    if let Some(path) = cfg.database_url.strip_prefix("sqlite://")
        && let Some(parent) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let sql = SqlStore::connect(&cfg.database_url, cfg.database_schema.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("database: {e}"))?;
    let eph: Arc<dyn EphemeralStore> = match &cfg.redis_url {
        Some(url) => Arc::new(
            RedisEphemeral::connect(url, &cfg.redis_key_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("redis: {e}"))?,
        ),
        None => Arc::new(sql.ephemeral()),
    };
    Ok((sql, eph))
}

/// Discovery, JWKS and liveness: served on both listeners.
fn metadata_routes() -> Router<Arc<AppState>> {
    use routes::meta;
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(meta::get_discovery),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(meta::get_discovery),
        )
        .route("/jwks", get(meta::get_jwks))
        .route("/healthz", get(meta::get_healthz))
}

fn web_router(st: Arc<AppState>) -> Router {
    use routes::{authorize as a, meta, passkey as pk};
    let mut r = metadata_routes()
        .route("/authorize", get(a::get_authorize).post(a::post_authorize))
        .route("/login", get(a::get_login).post(a::post_login))
        .route("/login/otp", get(a::get_otp).post(a::post_otp))
        .route("/consent", get(a::get_consent).post(a::post_consent))
        .route(consent_ui::STYLESHEET_PATH, get(a::get_stylesheet))
        .route("/clients/{client_id}/logo", get(crate::logo::get_logo))
        .route("/login/passkey", get(pk::get_signin).post(pk::post_signin))
        .route(
            "/login/passkey/finish",
            get(pk::get_signin).post(pk::post_signin_finish),
        )
        .route("/passkey", get(pk::get_manage).post(pk::post_add))
        .route("/passkey/rename", post(pk::post_rename))
        .route("/passkey/remove", post(pk::post_remove))
        .route(
            consent_ui::passkey::PASSKEY_SCRIPT_PATH,
            get(pk::get_script),
        )
        .route("/account", get(routes::dashboard::get_dashboard))
        .route(
            "/account/login",
            get(routes::dashboard::get_login).post(routes::dashboard::post_login),
        )
        .route(
            "/account/login/otp",
            get(routes::dashboard::get_otp).post(routes::dashboard::post_otp),
        )
        .route("/account/logout", post(routes::dashboard::post_logout))
        .route(
            "/account/login/passkey",
            get(routes::dashboard_passkey::get_signin).post(routes::dashboard_passkey::post_signin),
        )
        .route(
            "/account/login/passkey/finish",
            get(routes::dashboard_passkey::get_signin).post(routes::dashboard_passkey::post_finish),
        )
        .route("/account/security", get(routes::security::get_security))
        .route("/account/totp", get(routes::security::get_totp))
        .route(
            "/account/totp/start",
            post(routes::security::post_totp_start),
        )
        .route(
            "/account/totp/confirm",
            post(routes::security::post_totp_confirm),
        )
        .route(
            "/account/recovery-codes",
            post(routes::security::post_recovery_codes),
        )
        .route(
            "/account/passkeys/rename",
            post(routes::security::post_passkey_rename),
        )
        .route(
            "/account/passkeys/remove",
            post(routes::security::post_passkey_remove),
        )
        .route(
            "/account/consents/{id}/revoke",
            get(routes::dashboard::get_revoke).post(routes::dashboard::post_revoke),
        )
        .route("/readyz", get(meta::get_readyz))
        .route("/openapi.json", get(meta::get_openapi));
    if st.config.mode == Mode::Sandbox {
        r = r.route("/sandbox/callback", get(a::get_sandbox_callback));
        r = r.merge(routes::portal::router());
    }
    r.route_layer(axum::middleware::from_fn_with_state(
        "as_web",
        metrics::track,
    ))
    .fallback(meta::not_found)
    // Browser-facing: preloaded HSTS (FAPI 2.0 §5.2.3-1), no framing, no sniffing.
    .layer(SetResponseHeaderLayer::if_not_present(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=63072000; includeSubDomains; preload"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ))
    .layer(axum::middleware::from_fn(access_log))
    .layer(axum::middleware::from_fn(metrics::interaction))
    .with_state(st)
}

fn mtls_router(st: Arc<AppState>, gw: Arc<gateway::Gateway>) -> Router {
    use routes::{meta, par, token, userinfo as u};
    Router::new()
        .route(
            "/par",
            post(par::post_par).fallback(meta::method_not_allowed),
        )
        .route(
            "/token",
            post(token::post_token).fallback(meta::method_not_allowed),
        )
        .route("/userinfo", get(u::userinfo).post(u::userinfo))
        .route(
            "/introspect",
            post(u::post_introspect).fallback(meta::method_not_allowed),
        )
        .route(
            "/revoke",
            post(u::post_revoke).fallback(meta::method_not_allowed),
        )
        .route(
            "/register",
            post(routes::register::post_register).fallback(meta::method_not_allowed),
        )
        .route(
            "/register/{client_id}",
            get(routes::register::get_client)
                .put(routes::register::put_client)
                .delete(routes::register::delete_client)
                .fallback(meta::method_not_allowed),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            gateway::LayerCtx {
                gateway: gw,
                server: "as",
                flavour: gateway::Flavour::OAuth,
            },
            gateway::layer,
        ))
        .merge(metadata_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            "as_mtls",
            metrics::track,
        ))
        .fallback(meta::not_found)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(axum::middleware::from_fn(access_log))
        .layer(axum::middleware::from_fn(metrics::interaction))
        .with_state(st)
}

/// Method, path and status only: query strings carry request_uris and codes.
async fn access_log(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    resp
}

/// Where the resource server runs relative to the authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceServer {
    /// On its own listener in this process (tests, single-binary deployments).
    InProcess,
    /// In another process (`wekeza rs`), at `rs_port`.
    External,
}

/// Start the platform with the resource server in this process. Ports of 0 pick free
/// ports (tests); URLs use the bound ports.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Platform> {
    start_with(config, clock, ResourceServer::InProcess).await
}

/// Start the authorization server's listeners and, with [`ResourceServer::InProcess`],
/// the resource server's.
pub async fn start_with(
    config: Config,
    clock: Arc<dyn Clock>,
    rs: ResourceServer,
) -> anyhow::Result<Platform> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n  {}", e.join("\n  ")))?;
    let (sql, eph) = connect_sql(&config).await?;
    let store: Arc<dyn DurableStore> = Arc::new(sql.clone());
    let auth: Arc<dyn authz_store::AuthStore> = Arc::new(sql.clone());
    let usage: Arc<dyn authz_store::UsageStore> = Arc::new(sql.clone());
    let events_store: Arc<dyn authz_store::EventStore> = Arc::new(sql);
    if config.dpop_nonce_required
        && config.dpop_nonce_secret.is_none()
        && config.redis_url.is_some()
    {
        // Stateless nonces need one secret across instances (see `dpop`).
        tracing::warn!(
            "dpop_nonce_required without dpop_nonce_secret: each instance issues its own DPoP nonces, which other instances refuse; set a shared dpop_nonce_secret"
        );
    }

    let bind: std::net::IpAddr = config.bind_address.parse()?;
    let web_tcp = TcpListener::bind((bind, config.web_port))
        .await
        .with_context(|| format!("binding web port {}", config.web_port))?;
    let mtls_tcp = TcpListener::bind((bind, config.mtls_port))
        .await
        .with_context(|| format!("binding mTLS port {}", config.mtls_port))?;
    let rs_tcp = match rs {
        ResourceServer::InProcess => Some(
            TcpListener::bind((bind, config.rs_port))
                .await
                .with_context(|| format!("binding resource server port {}", config.rs_port))?,
        ),
        ResourceServer::External => None,
    };
    let web_addr = web_tcp.local_addr()?;
    let mtls_addr = mtls_tcp.local_addr()?;
    let rs_port = match &rs_tcp {
        Some(t) => t.local_addr()?.port(),
        None => config.rs_port,
    };
    let host = &config.public_host;
    let issuer = format!("https://{host}:{}", web_addr.port());
    let mtls_base = format!("https://{host}:{}", mtls_addr.port());
    let resource_base = format!("https://{host}:{rs_port}");

    let now = clock.now();
    let retention = config.access_token_ttl_secs.max(config.id_token_ttl_secs) + 300;
    let events_key = Arc::new(event_keys::load_or_create(&config.keys_dir, now)?);
    let (jws_key, jws_ec_key) = event_keys::load_or_create_jws(&config.keys_dir, now)?;
    let (jws_key, jws_ec_key) = (Arc::new(jws_key), Arc::new(jws_ec_key));
    let keys = Arc::new(
        KeyRing::load_or_create(&config.keys_dir, now, retention)?
            .publish_also(events_key.public_jwk())
            .publish_also(jws_key.public_jwk())
            .publish_also(jws_ec_key.public_jwk()),
    );

    let (chain_pem, key_pem, client_ca_pem, mut sandbox) = match config.mode {
        Mode::Sandbox => {
            let mut sb = provision::ensure_sandbox(
                &config.certs_dir,
                host,
                &issuer,
                &mtls_base,
                &resource_base,
                config.sandbox_load_customers,
            )?;
            // The kit tells TPP tools the `tan` their x-jws-signatures must name.
            if sb.kit.jws_trust_anchor.as_deref() != Some(config.jws_trust_anchor.as_str()) {
                sb.kit.jws_trust_anchor = Some(config.jws_trust_anchor.clone());
                keys::write_private(&sb.kit_path, &serde_json::to_vec_pretty(&sb.kit)?)?;
            }
            (
                sb.server_chain_pem.clone(),
                sb.server_key_pem.clone(),
                sb.client_ca_pem.clone(),
                Some(sb),
            )
        }
        Mode::Production => {
            let read = |p: &Option<PathBuf>| -> anyhow::Result<String> {
                let p = p.as_ref().context("missing file setting")?;
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            (
                read(&config.tls_cert_file)?,
                read(&config.tls_key_file)?,
                read(&config.client_ca_file)?,
                None,
            )
        }
    };

    let secrets = Arc::new(secrets::SecretBox::load_or_create(&config.keys_dir, now)?);
    if let Some(sb) = &sandbox {
        seed(&*store, &secrets, sb, now, config.sandbox_load_customers).await?;
    }
    let resealed = secrets::reseal_all(&*auth, &secrets).await?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            kid = secrets.active_kid(),
            "TOTP secrets sealed at rest"
        );
    }
    let bank = sandbox_bank(
        &*store,
        now,
        config.sandbox_load_customers,
        config.sandbox_load_accounts,
    )
    .await?;

    // Dynamic client registration (before the kit is handed out: it adds a statement).
    let dcr = routes::register::Dcr::configure(&config, sandbox.as_mut(), now)?;
    let mut discovery = authz_core::discovery::metadata(
        &authz_core::discovery::Endpoints {
            issuer: issuer.clone(),
            mtls_base: mtls_base.clone(),
        },
        &fapi_jose::Alg::ALL,
    );
    if dcr.is_some() {
        authz_core::discovery::add_registration_endpoint(&mut discovery, &mtls_base);
    }
    let state = Arc::new(AppState {
        config: config.clone(),
        issuer,
        mtls_base,
        resource_base,
        store,
        eph,
        keys,
        clock,
        discovery,
        dummy_password_hash: password::hash(&random_token(16))?,
        client_cache: Default::default(),
        dpop_nonces: dpop::Nonces::new(config.dpop_nonce_secret.as_deref()),
        bank: bank.clone(),
        auth,
        secrets,
        dcr,
        sandbox_bank: (config.mode == Mode::Sandbox).then(|| bank.clone()),
    });
    routes::portal::on_start(&state).await?;

    let chain = tls::load_chain(chain_pem.as_bytes())?;
    let key = tls::load_key(key_pem.as_bytes())?;
    let web_tls = tls::server_config(chain.clone(), key.clone_key(), None)?;
    let mtls_tls =
        tls::server_config(chain, key, Some(tls::load_chain(client_ca_pem.as_bytes())?))?;

    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut metrics_addr = None;
    let (gw, gw_tasks) =
        gateway::Gateway::start(&config, usage, state.clock.clone(), rx.clone()).await?;
    tasks.extend(gw_tasks);
    if config.metrics_port != 0 {
        let handle = metrics::install()?;
        let tcp = TcpListener::bind((bind, config.metrics_port))
            .await
            .with_context(|| format!("binding metrics port {}", config.metrics_port))?;
        metrics_addr = Some(tcp.local_addr()?);
        tasks.push(metrics::serve(tcp, handle, rx.clone()));
    }
    if let Some(rs_tcp) = rs_tcp {
        let (_verifier, rs_task) = rs_host::spawn(
            rs_tcp,
            mtls_tls.clone(),
            rs_host::RsInputs {
                store: state.store.clone(),
                eph: state.eph.clone(),
                bank,
                clock: state.clock.clone(),
                issuer: state.issuer.clone(),
                base_url: state.resource_base.clone(),
                keys: state.keys.verification_keys().to_vec(),
                rate_limit: config.rs_rate_limit(),
                auth: state.auth.clone(),
                events: Some(rs_host::RsEvents::from_config(
                    &config,
                    events_store,
                    events_key,
                )?),
                sandbox: config.mode == config::Mode::Sandbox,
                housekeeping: rs_host::housekeeping_of(&config),
                gateway: Some(gw.clone()),
                jws: Some(rs_host::jws_from_config(
                    &config,
                    jws_key,
                    jws_ec_key,
                    &state.issuer,
                )),
            },
            rx.clone(),
        )?;
        tasks.push(rs_task);
    }
    for (tcp, cfg, router) in [
        (web_tcp, web_tls, web_router(state.clone())),
        (mtls_tcp, mtls_tls, mtls_router(state.clone(), gw.clone())),
    ] {
        let listener = tls::TlsListener::spawn(tcp, cfg)?;
        let mut rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let svc = router.into_make_service_with_connect_info::<tls::TlsInfo>();
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, svc)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "server stopped with an error");
            }
        }));
    }
    let (kit, kit_path) = match sandbox {
        Some(sb) => (Some(sb.kit), Some(sb.kit_path)),
        None => (None, None),
    };
    Ok(Platform {
        rs_base: state.resource_base.clone(),
        state,
        web_addr,
        mtls_addr,
        kit,
        kit_path,
        metrics_addr,
        gateway: gw,
        shutdown: tx,
        tasks,
    })
}

/// The sandbox core bank (deterministic: every process started on the same day builds
/// the same bank), with the authorization server's customers linked to the bank's
/// customers of the same username, so a token's `sub` leads to the customer's accounts.
/// The load-test pool customers (`loadtest-0001`..) share the sandbox customer's
/// accounts, as they share its credentials.
pub async fn sandbox_bank(
    store: &dyn DurableStore,
    now: i64,
    load_customers: u32,
    load_accounts: u32,
) -> anyhow::Result<Arc<core_bank::SandboxBank>> {
    let today = time::OffsetDateTime::from_unix_timestamp(now)?.date();
    let cfg = core_bank::GeneratorConfig {
        extra_customers: load_accounts as usize,
        ..core_bank::GeneratorConfig::sandbox(today)
    };
    let bank = core_bank::generate(&cfg)
        .map_err(|e| anyhow::anyhow!("generating the sandbox bank: {e}"))?;
    let bank = Arc::new(core_bank::SandboxBank::new(bank));
    let customers = bank.read(|b| b.customers().to_vec());
    for c in customers {
        let found = store
            .find_customer_by_username(&c.username)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(rec) = found {
            bank.link_customer(&rec.id, &c.id)
                .map_err(|e| anyhow::anyhow!("linking {}: {e}", c.username))?;
        }
    }
    let sandbox_customer = bank.read(|b| {
        b.customer_by_username(provision::SANDBOX_USERNAME)
            .map(|c| c.id.clone())
    });
    // With `load_accounts`, the generated extra customers (after the personas) are the
    // load customers' banks: payments then leave many debtor accounts.
    let extras: Vec<String> = bank.read(|b| {
        let all = b.customers();
        all[all.len().saturating_sub(load_accounts as usize)..]
            .iter()
            .map(|c| c.id.clone())
            .collect()
    });
    if !extras.is_empty() {
        for i in 1..=load_customers {
            let username = format!("{}{i:04}", provision::POOL_PREFIX);
            let found = store
                .find_customer_by_username(&username)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(rec) = found {
                let bank_id = &extras[(i as usize - 1) % extras.len()];
                bank.link_customer(&rec.id, bank_id)
                    .map_err(|e| anyhow::anyhow!("linking {username}: {e}"))?;
            }
        }
    } else if let Some(bank_id) = sandbox_customer {
        for i in 1..=load_customers {
            let username = format!("{}{i:04}", provision::POOL_PREFIX);
            let found = store
                .find_customer_by_username(&username)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(rec) = found {
                bank.link_customer(&rec.id, &bank_id)
                    .map_err(|e| anyhow::anyhow!("linking {username}: {e}"))?;
            }
        }
    }
    // Payments (issue 7): the accounts enter the durable ledger once, with today's
    // balances as opening balances.
    if let Some(p) = store.payments() {
        resource_server::ledger::seed_ledger(p, &bank, now).await?;
    }
    Ok(bank)
}

/// Register the sandbox clients and customer (idempotent).
async fn seed(
    store: &dyn DurableStore,
    secrets: &secrets::SecretBox,
    sb: &provision::Sandbox,
    now: i64,
    load_customers: u32,
) -> anyhow::Result<()> {
    for c in &sb.clients {
        let rec = authz_store::ClientRecord {
            client_id: c.client_id.clone(),
            metadata: serde_json::to_value(c)?,
            created_at: now,
            updated_at: now,
        };
        store
            .upsert_client(&rec)
            .await
            .map_err(|e| anyhow::anyhow!("seeding client: {e}"))?;
    }
    logo::seed_sandbox_logos(store, sb.clients.iter().map(|c| c.client_id.as_str()), now).await?;
    let kc = &sb.kit.customer;
    let existing = store
        .find_customer_by_username(&kc.username)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Stored sealed (see `secrets`); compared in clear.
    let current = existing.as_ref().is_some_and(|c| {
        secrets
            .open(&c.id, &c.totp_secret)
            .is_ok_and(|o| o.secret == kc.totp_secret)
            && password::verify(&kc.password, &c.password_hash)
    });
    if !current {
        let id = existing
            .map(|c| c.id)
            .unwrap_or_else(|| format!("cust-{}", uuid::Uuid::new_v4()));
        let rec = authz_store::CustomerRecord {
            totp_secret: secrets.seal(&id, &kc.totp_secret)?,
            id,
            username: kc.username.clone(),
            display_name: "Alice Wanjiru".into(),
            password_hash: password::hash(&kc.password)?,
            totp_last_step: 0,
            created_at: now,
        };
        store
            .upsert_customer(&rec)
            .await
            .map_err(|e| anyhow::anyhow!("seeding customer: {e}"))?;
    }
    if load_customers > 0 {
        // One hash for all: they share the sandbox password on purpose.
        let hash = password::hash(&kc.password)?;
        for i in 1..=load_customers {
            let username = format!("{}{i:04}", provision::POOL_PREFIX);
            let found = store
                .find_customer_by_username(&username)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if found.is_none() {
                let id = format!("cust-{}", uuid::Uuid::new_v4());
                let rec = authz_store::CustomerRecord {
                    totp_secret: secrets.seal(&id, &kc.totp_secret)?,
                    id,
                    username,
                    display_name: format!("Load Test {i}"),
                    password_hash: hash.clone(),
                    totp_last_step: 0,
                    created_at: now,
                };
                store
                    .upsert_customer(&rec)
                    .await
                    .map_err(|e| anyhow::anyhow!("seeding load customers: {e}"))?;
            }
        }
    }
    Ok(())
}
