//! Rendering: the human-readable summary and the JSON report.

use super::log::Status;
use super::{ModuleResult, Report, VariantReport};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn module_lines(out: &mut String, m: &ModuleResult, verbose: bool) {
    let reqs = if m.requirements.is_empty() {
        String::new()
    } else {
        let mut r: Vec<&str> = m.requirements.iter().map(String::as_str).take(4).collect();
        if m.requirements.len() > 4 {
            r.push("…");
        }
        r.join(" ")
    };
    let tail = match (&m.status, &m.reason) {
        (Status::Skipped, Some(r)) => format!("— {r}"),
        _ => format!("{reqs}  ({:.1} s)", m.duration_ms as f64 / 1000.0),
    };
    let _ = writeln!(out, "  {:<8} {:<74} {tail}", m.status.as_str(), m.name);
    let detail = verbose || matches!(m.status, Status::Fail | Status::Warning);
    if !detail {
        return;
    }
    for c in &m.checks {
        if verbose || c.status != Status::Pass {
            let _ = writeln!(
                out,
                "      {} [{}] {}",
                c.status.as_str(),
                c.requirement,
                c.message
            );
        }
    }
    for n in &m.notes {
        let _ = writeln!(out, "      note: {n}");
    }
    for e in &m.evidence {
        let mut line = format!("      evidence {}:", e.step);
        if let Some(s) = e.status {
            let _ = write!(line, " {s}");
        }
        if let Some(err) = &e.error {
            let _ = write!(line, " {err}");
        }
        if let Some(d) = &e.detail {
            let _ = write!(line, " ({d})");
        }
        let _ = write!(line, " <= {}", e.request);
        let _ = writeln!(out, "{}", line.chars().take(360).collect::<String>());
    }
}

pub fn variant_summary(v: &VariantReport, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {}  [{}]  {:.1} s\n   {}",
        v.label,
        v.status.as_str(),
        v.duration_ms as f64 / 1000.0,
        v.plan
    );
    if !v.client.is_empty() {
        let _ = writeln!(out, "   client: {}   client2: {}", v.client, v.client2);
    }
    for n in &v.notes {
        let _ = writeln!(out, "   note: {n}");
    }
    for m in &v.modules {
        module_lines(&mut out, m, verbose);
    }
    let counts: Vec<String> = v.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(out, "   totals: {}", counts.join(", "));
    out
}

/// Modules × variants, one letter per cell.
pub fn matrix(r: &Report) -> String {
    let mut out = String::new();
    if r.variants.len() < 2 {
        return out;
    }
    let _ = writeln!(
        out,
        "\nmodule results per variant (P pass, F fail, W warning, - skipped):"
    );
    for (i, v) in r.variants.iter().enumerate() {
        let _ = writeln!(out, "  [{}] {}", i + 1, v.label);
    }
    let names: Vec<&str> = r.variants[0]
        .modules
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for (row, name) in names.iter().enumerate() {
        let cells: Vec<&str> = r
            .variants
            .iter()
            .map(|v| match v.modules.get(row).map(|m| m.status) {
                Some(Status::Pass) => "P",
                Some(Status::Fail) => "F",
                Some(Status::Warning) => "W",
                _ => "-",
            })
            .collect();
        let _ = writeln!(out, "  {}  {name}", cells.join(" "));
    }
    out
}

pub fn summary(r: &Report, verbose: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "FAPI 2.0 conformance run against {} ({})",
        r.issuer, r.generated_at
    );
    for v in &r.variants {
        out.push_str(&variant_summary(v, verbose));
    }
    out.push_str(&matrix(r));
    for n in &r.not_run {
        let _ = writeln!(out, "variant not run: {n}");
    }
    for w in &r.unexpected_warnings {
        let _ = writeln!(out, "unexpected WARNING (not in expected-warnings.md): {w}");
    }
    let _ = writeln!(
        out,
        "\nresult: {}  ({} variant(s), {:.1} s)",
        r.status.as_str(),
        r.variants.len(),
        r.duration_ms as f64 / 1000.0
    );
    out
}

/// Write `report.json` and `summary.txt` into `dir`; returns the JSON path.
pub fn write(dir: &Path, r: &Report, summary_text: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("report.json");
    std::fs::write(&json, serde_json::to_vec_pretty(r)?)?;
    std::fs::write(dir.join("summary.txt"), summary_text)?;
    Ok(json)
}
