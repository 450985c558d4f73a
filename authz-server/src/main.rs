//! `wekeza`: starts the platform (default), checks configuration, rotates signing keys,
//! or prints the sandbox customer's current TOTP code.

use authz_server::clock::{Clock, SystemClock};
use authz_server::config::{Config, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

// malloc/free were a fifth of the resource server's CPU under load (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wekeza",
    about = "Wekeza Open Banking Platform: FAPI 2.0 authorization server"
)]
struct Cli {
    /// TOML configuration file (default: ./wekeza.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the platform (the default): the authorization server in this process and
    /// the resource server as a child process (`wekeza rs`).
    Run,
    /// Start only the resource server (needs a running authorization server: it fetches
    /// its JWKS, and shares its database).
    Rs {
        /// Stop when stdin closes (set by `wekeza run` for its child).
        #[arg(long, hide = true)]
        watch_parent: bool,
    },
    /// Validate the configuration and exit.
    CheckConfig,
    /// Retire the active signing key of an algorithm and create a new one (restart to apply).
    RotateKeys {
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
    /// Print the sandbox customer's current TOTP code.
    Totp,
    /// Retire the key that seals TOTP secrets and create a new one (restart to apply:
    /// the start re-seals every secret under the new key).
    RotateSecretKey,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("configuration is invalid:");
            for e in errs {
                eprintln!("  - {e}");
            }
            return std::process::ExitCode::from(2);
        }
    };
    match cli.cmd.unwrap_or(Cmd::Run) {
        Cmd::CheckConfig => {
            println!("configuration is valid: {cfg:?}");
            std::process::ExitCode::SUCCESS
        }
        Cmd::RotateKeys { alg } => match fapi_jose::Alg::parse(&alg) {
            Ok(a) => match authz_server::keys::KeyRing::rotate(&cfg.keys_dir, a, SystemClock.now())
            {
                Ok(kid) => {
                    println!(
                        "new {alg} key {kid}; the previous one stays published until its tokens expire. Restart to apply."
                    );
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rotation failed: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            },
            Err(_) => {
                eprintln!("--alg must be ES256, PS256 or EdDSA");
                std::process::ExitCode::from(2)
            }
        },
        Cmd::Totp => {
            let path = cfg.certs_dir.join("sandbox/kit.json");
            let kit: Option<authz_server::provision::Kit> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match kit.and_then(|k| {
                authz_server::password::totp_code(&k.customer.totp_secret, SystemClock.now())
            }) {
                Some(code) => {
                    println!("{code}");
                    std::process::ExitCode::SUCCESS
                }
                None => {
                    eprintln!(
                        "no sandbox kit at {}; start the platform first",
                        path.display()
                    );
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Cmd::RotateSecretKey => {
            match authz_server::secrets::SecretBox::rotate(&cfg.keys_dir, SystemClock.now()) {
                Ok(kid) => {
                    println!("new secret-sealing key {kid}; restart to re-seal stored secrets.");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("rotation failed: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Cmd::Run => run(cfg, cli.config),
        Cmd::Rs { watch_parent } => run_rs(cfg, watch_parent),
    }
}

fn init_logs(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            None
        }
    }
}

fn run_rs(cfg: Config, watch_parent: bool) -> std::process::ExitCode {
    init_logs(&cfg);
    let Some(rt) = runtime() else {
        return std::process::ExitCode::FAILURE;
    };
    rt.block_on(async move {
        let rs = match authz_server::rs_host::start_standalone(cfg, Arc::new(SystemClock)).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("resource server start-up failed: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        };
        tracing::info!(base_url = %rs.base_url, "resource server listening");
        // Started by `wekeza run`: the parent holds our stdin open; EOF means it is gone
        // (even after a SIGKILL), and an orphaned resource server must not linger.
        let parent_gone = async {
            if watch_parent {
                let mut buf = [0u8; 64];
                let mut stdin = tokio::io::stdin();
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                tracing::warn!("the platform process is gone; stopping the resource server");
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = shutdown_signal() => {},
            _ = parent_gone => {},
        }
        rs.shutdown().await;
        std::process::ExitCode::SUCCESS
    })
}

/// The resource server as a child process with the same configuration. The child's
/// stdin stays open for as long as this process lives.
fn spawn_rs_child(config: Option<&PathBuf>) -> std::io::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new(exe);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("rs")
        .arg("--watch-parent")
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

fn run(cfg: Config, config_file: Option<PathBuf>) -> std::process::ExitCode {
    init_logs(&cfg);
    let rt = match runtime() {
        Some(rt) => rt,
        None => return std::process::ExitCode::FAILURE,
    };
    rt.block_on(async move {
        let platform = match authz_server::start_with(
            cfg,
            Arc::new(SystemClock),
            authz_server::ResourceServer::External,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("start-up failed: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let mut rs = match spawn_rs_child(config_file.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot start the resource server process: {e}");
                platform.shutdown().await;
                return std::process::ExitCode::FAILURE;
            }
        };
        // `wait()` would close the child's stdin; held here, it closes only when this
        // process ends (the child's signal that the platform is gone).
        let _parent_alive = rs.stdin.take();
        banner(&platform);
        let code = tokio::select! {
            _ = shutdown_signal() => std::process::ExitCode::SUCCESS,
            status = rs.wait() => {
                tracing::error!(?status, "the resource server process ended; stopping");
                std::process::ExitCode::FAILURE
            }
        };
        tracing::info!("shutting down");
        let _ = rs.start_kill();
        platform.shutdown().await;
        code
    })
}

fn banner(p: &authz_server::Platform) {
    let st = &p.state;
    println!();
    println!("  Wekeza Open Banking Platform ({:?} mode)", st.config.mode);
    println!("  issuer / browser listener : {}", st.issuer);
    println!(
        "  discovery                 : {}/.well-known/openid-configuration",
        st.issuer
    );
    println!("  customer dashboard        : {}/account", st.issuer);
    println!(
        "  back-channel (mTLS)       : {}  (PAR, token, userinfo, introspection, revocation)",
        st.mtls_base
    );
    println!(
        "  resource server (mTLS)    : {}/open-banking/v4.0/aisp  (account-access-consents, accounts, balances, transactions...)",
        st.resource_base
    );
    println!(
        "  resource API docs         : {}{}",
        st.resource_base,
        resource_server::openapi::SWAGGER_UI_PATH
    );
    if let (Some(kit), Some(path)) = (&p.kit, &p.kit_path) {
        println!("  sandbox TPP kit           : {}", path.display());
        println!("  trust anchor (CA)         : {}", kit.ca_cert.display());
        for c in &kit.clients {
            println!(
                "  sandbox client            : {} ({}), cert {}",
                c.client_id,
                c.token_endpoint_auth_method,
                c.cert.display()
            );
        }
        println!(
            "  sandbox customer          : username {}  password {}",
            kit.customer.username, kit.customer.password
        );
        println!(
            "  customer TOTP secret      : {}  (current code: `cargo run --release -- totp`)",
            kit.customer.totp_secret
        );
        println!("  developer portal          : {}/portal", st.issuer);
        if let Some((u, pw)) = authz_server::routes::portal::admin_credentials(&st.config.certs_dir)
        {
            println!("  portal admin (go-live)    : username {u}  password {pw}");
        }
    }
    println!();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
