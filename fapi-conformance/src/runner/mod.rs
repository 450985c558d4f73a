//! The FAPI 2.0 conformance runner: executes the OIDF AS test plans' modules, variant by
//! variant, against any deployment described by a TPP kit, speaking only HTTP/TLS to it.
//! Each module ends PASS / FAIL / WARNING / SKIPPED with the requirements it checked and
//! the evidence; [`report`] renders the summary and the JSON report.

pub mod browse;
pub mod checks;
pub mod ctx;
pub mod log;
pub mod modules;
pub mod oidf;
pub mod registry;
pub mod report;
pub mod tls;
pub mod variant;

use crate::kit::Kit;
use ctx::{Ctx, Customers};
use log::{Check, Evidence, Log, Status};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use variant::{Capabilities, Variant};

#[derive(Clone)]
pub struct RunOptions {
    pub kit: PathBuf,
    pub variants: Vec<Variant>,
    /// Module filters (empty: all).
    pub modules: Vec<String>,
    /// The deployment's authorization code lifetime, seconds.
    pub code_lifetime: u64,
    /// Modules running at once (slow, clock-bound modules do not count).
    pub jobs: usize,
    pub module_timeout: Duration,
    /// Run the variants at the same time instead of one after the other.
    pub parallel_variants: bool,
    /// `variant/module` or `module` names whose WARNING is known (see expected-warnings.md).
    pub expected_warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModuleResult {
    pub name: String,
    pub test_name: String,
    pub plan: &'static str,
    pub status: Status,
    pub requirements: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    pub evidence: Vec<Evidence>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantReport {
    pub variant: Variant,
    pub label: String,
    pub plan: String,
    pub status: Status,
    pub duration_ms: u64,
    pub client: String,
    pub client2: String,
    pub notes: Vec<String>,
    pub counts: std::collections::BTreeMap<&'static str, usize>,
    pub modules: Vec<ModuleResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub generated_at: String,
    pub issuer: String,
    pub capabilities: Capabilities,
    pub status: Status,
    pub duration_ms: u64,
    pub not_run: Vec<String>,
    /// WARNING results not listed as expected.
    pub unexpected_warnings: Vec<String>,
    pub variants: Vec<VariantReport>,
}

fn result(m: &registry::Module, log: Log, elapsed: Duration) -> ModuleResult {
    let mut requirements: Vec<String> = registry::primary(m.name)
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for c in &log.checks {
        if !c.requirement.is_empty() && !requirements.contains(&c.requirement) {
            requirements.push(c.requirement.clone());
        }
    }
    ModuleResult {
        name: m.name.to_owned(),
        test_name: m.test_name(),
        plan: match m.plan {
            registry::Plan::Sp => "SP",
            registry::Plan::MsOnly => "MS",
        },
        status: log.status(),
        requirements,
        reason: log.skipped.clone(),
        checks: log.checks,
        evidence: log.evidence,
        notes: log.notes,
        duration_ms: elapsed.as_millis() as u64,
    }
}

fn skipped(m: &registry::Module, why: &str) -> ModuleResult {
    let mut log = Log::default();
    log.skip(why);
    result(m, log, Duration::ZERO)
}

/// Read the deployment's metadata to learn what it supports; for UK Open Banking also
/// whether the kit's resource server answers.
pub async fn capabilities(kit: &Kit) -> anyhow::Result<Capabilities> {
    let ca = std::fs::read(&kit.ca_cert)?;
    let http = crate::tpp::https_client(&ca, None)?;
    let d: serde_json::Value = http
        .get(format!("{}/.well-known/openid-configuration", kit.issuer))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut caps = Capabilities::from_discovery(&d);
    if caps.uk_ob_resources {
        caps.uk_ob_resources = resource_server_answers(kit, &ca).await;
    }
    Ok(caps)
}

/// The UK OB accounts endpoint of the kit's resource server.
pub fn uk_accounts_url(kit: &Kit) -> String {
    format!(
        "{}{}/accounts",
        kit.resource_base_url.trim_end_matches('/'),
        UK_AISP
    )
}

/// The UK OB account-access-consents endpoint of the kit's resource server.
pub fn uk_consents_url(kit: &Kit) -> String {
    format!(
        "{}{}/account-access-consents",
        kit.resource_base_url.trim_end_matches('/'),
        UK_AISP
    )
}

/// Path prefix of the UK OB v4 account information API.
pub const UK_AISP: &str = "/open-banking/v4.0/aisp";

/// Whether the RS answers HTTP at all (any status: a request without a token is refused),
/// over a kit client's certificate in case the listener asks for one.
async fn resource_server_answers(kit: &Kit, ca: &[u8]) -> bool {
    if kit.resource_base_url.trim().is_empty() {
        return false;
    }
    let identity = kit.clients.first().and_then(|c| {
        let mut pem = std::fs::read(&c.cert).ok()?;
        pem.extend(std::fs::read(&c.key).ok()?);
        Some(pem)
    });
    let Ok(http) = crate::tpp::https_client(ca, identity.as_deref()) else {
        return false;
    };
    http.get(uk_accounts_url(kit))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .is_ok()
}

/// Module names (or `variant/module`) in backticks under the file's
/// `## Expected warnings` heading.
pub fn read_expected_warnings(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let all = std::fs::read_to_string(path)?;
    let text = all
        .split("\n## ")
        .find(|s| s.starts_with("Expected warnings"))
        .unwrap_or_default();
    let names: Vec<String> = registry::modules()
        .iter()
        .map(|m| m.name.to_owned())
        .collect();
    Ok(text
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| {
            let module = t.rsplit('/').next().unwrap_or_default();
            names.iter().any(|n| n == module)
        })
        .map(str::to_owned)
        .collect())
}

pub async fn run(opts: &RunOptions) -> anyhow::Result<Report> {
    let started = Instant::now();
    let kit = Kit::load(&opts.kit)?;
    let caps = capabilities(&kit).await?;
    let customers = Arc::new(Customers::from_kit(&kit));
    let mut variants = Vec::new();
    if opts.parallel_variants {
        let mut set = tokio::task::JoinSet::new();
        for (i, v) in opts.variants.iter().enumerate() {
            let (kit, o, c, v) = (kit.clone(), opts.clone(), customers.clone(), *v);
            set.spawn(async move { (i, run_variant(&kit, v, caps, c, &o).await) });
        }
        let mut done = Vec::new();
        while let Some(j) = set.join_next().await {
            done.push(j?);
        }
        done.sort_by_key(|(i, _)| *i);
        variants = done.into_iter().map(|(_, r)| r).collect();
    } else {
        for v in &opts.variants {
            variants.push(run_variant(&kit, *v, caps, customers.clone(), opts).await);
        }
    }
    let mut unexpected_warnings = Vec::new();
    for v in &variants {
        for m in v.modules.iter().filter(|m| m.status == Status::Warning) {
            let full = format!("{}/{}", v.label, m.name);
            if !opts
                .expected_warnings
                .iter()
                .any(|e| *e == m.name || *e == full)
            {
                unexpected_warnings.push(full);
            }
        }
    }
    let status = variants
        .iter()
        .map(|v| v.status)
        .max()
        .unwrap_or(Status::Skipped);
    let not_run = Variant::matrix()
        .iter()
        .filter(|v| !opts.variants.contains(v))
        .filter_map(|v| {
            caps.variant_gap(v)
                .map(str::to_owned)
                .or_else(|| ctx::kit_gap(&kit, v))
                .map(|g| format!("{}: {g}", v.label()))
        })
        .collect();
    Ok(Report {
        tool: "fapi-conformance",
        version: env!("CARGO_PKG_VERSION"),
        generated_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        issuer: kit.issuer.clone(),
        capabilities: caps,
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        not_run,
        unexpected_warnings,
        variants,
    })
}

pub async fn run_variant(
    kit: &Kit,
    variant: Variant,
    caps: Capabilities,
    customers: Arc<Customers>,
    opts: &RunOptions,
) -> VariantReport {
    let started = Instant::now();
    let mods: Vec<registry::Module> = registry::modules()
        .into_iter()
        .filter(|m| opts.modules.is_empty() || opts.modules.iter().any(|f| m.matches(f)))
        .collect();
    let mut out: Vec<Option<ModuleResult>> = vec![None; mods.len()];
    let mut notes = Vec::new();
    let (mut client, mut client2) = (String::new(), String::new());

    // A variant the AS (or the kit) cannot run: every module is skipped with the reason.
    let gap = caps
        .variant_gap(&variant)
        .map(str::to_owned)
        .or_else(|| ctx::kit_gap(kit, &variant));
    let ctx = match gap {
        Some(g) => Err(g),
        None => Ctx::new(kit, variant, caps, customers, opts.code_lifetime)
            .await
            .map_err(|e| format!("setting up the clients failed: {e:#}")),
    };
    match ctx {
        Err(why) => {
            let is_gap =
                caps.variant_gap(&variant).is_some() || ctx::kit_gap(kit, &variant).is_some();
            for (i, m) in mods.iter().enumerate() {
                out[i] = Some(if is_gap {
                    skipped(m, &why)
                } else {
                    let mut log = Log::default();
                    log.fail("", why.clone());
                    result(m, log, Duration::ZERO)
                });
            }
            notes.push(why);
        }
        Ok(ctx) => {
            let ctx = Arc::new(ctx);
            client = format!("{} ({})", ctx.c1.client_id, variant.auth_method());
            client2 = ctx.c2.client_id.clone();
            notes.extend(ctx.notes.iter().cloned());
            if ctx.customers.pool_size() < 2 {
                notes.push("no customer pool in the kit: each login waits for a fresh TOTP step (slow); start the sandbox with WEKEZA_SANDBOX_LOAD_CUSTOMERS".into());
            }
            let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
            let mut set = tokio::task::JoinSet::new();
            for (i, m) in mods.iter().enumerate() {
                if let Some(why) = m.skip_reason(&variant, &caps) {
                    out[i] = Some(skipped(m, &why));
                    continue;
                }
                let Some(run) = m.run else { continue };
                let (ctx, sem, slow, limit) =
                    (ctx.clone(), sem.clone(), m.slow, opts.module_timeout);
                set.spawn(async move {
                    let _permit = if slow {
                        None
                    } else {
                        sem.acquire_owned().await.ok()
                    };
                    let t0 = Instant::now();
                    let log = match tokio::time::timeout(limit, run(ctx)).await {
                        Ok(l) => l,
                        Err(_) => {
                            let mut l = Log::default();
                            l.fail("", format!("module timed out after {} s", limit.as_secs()));
                            l
                        }
                    };
                    (i, log, t0.elapsed())
                });
            }
            while let Some(j) = set.join_next().await {
                match j {
                    Ok((i, log, took)) => out[i] = Some(result(&mods[i], log, took)),
                    Err(e) => notes.push(format!("a module task failed: {e}")),
                }
            }
        }
    }
    let modules: Vec<ModuleResult> = out
        .into_iter()
        .zip(mods.iter())
        .map(|(r, m)| {
            r.unwrap_or_else(|| {
                let mut log = Log::default();
                log.fail("", "module did not report (task panicked)");
                result(m, log, Duration::ZERO)
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for m in &modules {
        *counts.entry(m.status.as_str()).or_insert(0) += 1;
    }
    let status = if modules.iter().any(|m| m.status == Status::Fail) {
        Status::Fail
    } else if modules.iter().any(|m| m.status == Status::Warning) {
        Status::Warning
    } else if modules.iter().all(|m| m.status == Status::Skipped) {
        Status::Skipped
    } else {
        Status::Pass
    };
    VariantReport {
        label: variant.label(),
        plan: variant.plan_string(),
        variant,
        status,
        duration_ms: started.elapsed().as_millis() as u64,
        client,
        client2,
        notes,
        counts,
        modules,
    }
}
