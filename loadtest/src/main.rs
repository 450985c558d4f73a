//! `wekeza-load`: closed-loop load against the token endpoint (mTLS + private_key_jwt, or
//! plain HTTP for a peer server), against the whole authorization-code flow, and against
//! the resource server's account-information reads (closed or open loop). Prints
//! req/s, latency quantiles and, with `--server-pid`, the server's CPU use, ending with one
//! `RESULT key=value ...` line for scripts (`loadtest/bench.sh`).

mod flow;
mod pay;
mod rs;
mod stats;
mod token;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wekeza-load",
    about = "Load tool for the Wekeza authorization server"
)]
struct Cli {
    /// Tokio worker threads of the load tool (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// client_credentials at the token endpoint.
    Token(token::TokenArgs),
    /// The full code flow: PAR, authorize, password, OTP, consent, code exchange.
    Flow(flow::FlowArgs),
    /// Account-information reads at the resource server (balances or transactions) with a
    /// customer's certificate-bound access token.
    Rs(rs::RsArgs),
    /// Domestic payments at the resource server: consents authorised first, then executed.
    Payments(pay::PayArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    rt.build()?.block_on(async move {
        match cli.cmd {
            Cmd::Token(a) => token::run(a).await,
            Cmd::Flow(a) => flow::run(a).await,
            Cmd::Rs(a) => rs::run(a).await,
            Cmd::Payments(a) => pay::run(a).await,
        }
    })
}
