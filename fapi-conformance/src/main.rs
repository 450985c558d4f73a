//! `fapi-conformance`: run the FAPI 2.0 conformance modules against a deployment, or write
//! the OpenID Foundation suite's configuration for it.

use clap::{Args, Parser, Subcommand};
use fapi_conformance::runner::{self, RunOptions, oidf, registry, report, variant::Variant};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "fapi-conformance",
    about = "FAPI 2.0 conformance runner (OIDF AS test plans, run black-box over HTTPS)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write the OpenID Foundation suite's JSON config (one per variant) and plans.txt.
    OidfConfig(Box<OidfArgs>),
    /// List the modules and, per variant, whether they run or why not.
    ListModules(VariantArgs),
}

#[derive(Args, Clone)]
struct VariantArgs {
    /// TPP kit of the deployment.
    #[arg(long, default_value = "certs/sandbox/kit.json")]
    kit: PathBuf,
    /// A variant: key=value pairs (client_auth_type, sender_constrain, openid,
    /// fapi_profile, fapi_request_method) separated by commas, or the suite's
    /// [k=v][k=v] form. Repeatable. Default: private_key_jwt, mtls, openid_connect.
    #[arg(long = "variant")]
    variants: Vec<String>,
    /// Every variant the deployment supports (plain_fapi, and the openbanking_uk ones when
    /// the AS takes openbanking_intent_id claims and the kit's resource server answers).
    #[arg(long)]
    all_variants: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    v: VariantArgs,
    /// Folder for report.json and summary.txt.
    #[arg(long, default_value = "conformance-report")]
    report_dir: PathBuf,
    /// Run only modules whose name contains this (repeatable; the
    /// fapi2-security-profile-final- prefix is optional).
    #[arg(long = "module")]
    modules: Vec<String>,
    /// The deployment's authorization code lifetime in seconds (the expired-code
    /// module waits this long plus one second).
    #[arg(long, default_value_t = 60)]
    code_lifetime: u64,
    /// Modules run at once (clock-bound modules are not counted).
    #[arg(long, default_value_t = 8)]
    jobs: usize,
    /// Give up on a module after this many seconds.
    #[arg(long, default_value_t = 240)]
    module_timeout: u64,
    /// Run the variants concurrently (each still reports its own wall time).
    #[arg(long)]
    parallel_variants: bool,
    /// Markdown file naming the WARNINGs that are known (module names in backticks).
    #[arg(long)]
    expected_warnings: Option<PathBuf>,
    /// Exit non-zero on WARNINGs not listed in --expected-warnings, too.
    #[arg(long)]
    strict: bool,
    /// Print every check and all evidence, not only for FAIL and WARNING.
    #[arg(long)]
    verbose: bool,
}

#[derive(Args)]
struct OidfArgs {
    #[command(flatten)]
    v: VariantArgs,
    /// Output folder.
    #[arg(long, default_value = "oidf-config")]
    out: PathBuf,
    /// Test-plan alias (its callback must be registered for the clients).
    #[arg(long, default_value = "wekeza")]
    alias: String,
    /// Where the suite runs (for the callback URL).
    #[arg(long, default_value = "https://localhost.emobix.co.uk:8443")]
    suite_base_url: String,
    /// Second-factor code for the scripted browser (a static sandbox code, if the
    /// deployment has one).
    #[arg(long)]
    otp: Option<String>,
    /// Leave out the `browser` block (log in by hand in the suite).
    #[arg(long)]
    no_browser: bool,
    /// resource.resourceUrl (default: plain_fapi the userinfo endpoint from discovery;
    /// openbanking_uk the accounts endpoint of the kit's resource server).
    #[arg(long)]
    resource_url: Option<String>,
    /// client2 overrides for deployments with a second client of the same method.
    #[arg(long)]
    client2_id: Option<String>,
    #[arg(long)]
    client2_jwk: Option<PathBuf>,
    #[arg(long)]
    client2_cert: Option<PathBuf>,
    #[arg(long)]
    client2_key: Option<PathBuf>,
}

async fn variants(a: &VariantArgs) -> anyhow::Result<Vec<Variant>> {
    if a.all_variants {
        let kit = fapi_conformance::Kit::load(&a.kit)?;
        let caps = runner::capabilities(&kit).await?;
        return Ok(Variant::matrix()
            .into_iter()
            .filter(|v| caps.variant_gap(v).is_none() && runner::ctx::kit_gap(&kit, v).is_none())
            .collect());
    }
    if a.variants.is_empty() {
        return Ok(vec![Variant::default()]);
    }
    a.variants
        .iter()
        .map(|s| Variant::parse(s).map_err(|e| anyhow::anyhow!("--variant {s}: {e}")))
        .collect()
}

async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = RunOptions {
        variants: variants(&a.v).await?,
        kit: a.v.kit,
        modules: a.modules,
        code_lifetime: a.code_lifetime,
        jobs: a.jobs,
        module_timeout: Duration::from_secs(a.module_timeout),
        parallel_variants: a.parallel_variants,
        expected_warnings: match &a.expected_warnings {
            Some(p) => runner::read_expected_warnings(p)?,
            None => Vec::new(),
        },
    };
    let r = runner::run(&opts).await?;
    let text = report::summary(&r, a.verbose);
    print!("{text}");
    let path = report::write(&a.report_dir, &r, &report::summary(&r, true))?;
    println!("report: {}", path.display());
    let strict_fail = a.strict && !r.unexpected_warnings.is_empty();
    Ok(if r.status == runner::log::Status::Fail || strict_fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn oidf_config(a: OidfArgs) -> anyhow::Result<ExitCode> {
    let o = oidf::OidfOptions {
        variants: variants(&a.v).await?,
        kit: a.v.kit,
        out_dir: a.out,
        alias: a.alias,
        suite_base_url: a.suite_base_url,
        otp: a.otp,
        browser: !a.no_browser,
        resource_url: a.resource_url,
        client2_id: a.client2_id,
        client2_jwk: a.client2_jwk,
        client2_cert: a.client2_cert,
        client2_key: a.client2_key,
    };
    let g = oidf::generate(&o).await?;
    for f in &g.files {
        println!("wrote {}", f.display());
    }
    for w in &g.warnings {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(a: VariantArgs) -> anyhow::Result<ExitCode> {
    let kit = fapi_conformance::Kit::load(&a.kit)?;
    let caps = runner::capabilities(&kit).await?;
    let vs = variants(&a).await?;
    for v in vs {
        println!("{}", v.plan_string());
        for m in registry::modules() {
            match caps
                .variant_gap(&v)
                .map(str::to_owned)
                .or_else(|| m.skip_reason(&v, &caps))
            {
                Some(why) => println!("  SKIP  {}  — {why}", m.test_name()),
                None => println!("  RUN   {}", m.test_name()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Some(Cmd::OidfConfig(a)) => oidf_config(*a).await,
        Some(Cmd::ListModules(a)) => list(a).await,
        None => run(cli.run).await,
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fapi-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}
