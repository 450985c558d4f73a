//! TLS version and cipher probes with `openssl s_client` (FAPI 2.0 §5.2).

use super::log::Log;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

/// BCP 195 recommended TLS 1.2 suites (FAPI 2.0 §5.2.2; DHE is not accepted by the suite).
const RECOMMENDED_TLS12: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384";
/// Suites BCP 195 allows for TLS 1.2 (adds DHE-RSA-GCM), for browser-facing endpoints.
const ALLOWED_TLS12: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";

#[derive(Debug, Clone)]
enum Probe {
    Connected {
        protocol: String,
        cipher: String,
    },
    Refused(String),
    /// The local OpenSSL cannot offer what was asked.
    Unsupported(String),
}

async fn s_client(hostport: &str, host: &str, args: &[&str]) -> anyhow::Result<Probe> {
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(hostport)
        .arg("-servername")
        .arg(host)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(15), cmd.output()).await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("no protocols available") || text.contains("no cipher match") {
        return Ok(Probe::Unsupported(first_error(&text)));
    }
    // "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384"
    if let Some(line) = text.lines().find(|l| l.starts_with("New, ")) {
        let parts: Vec<&str> = line.split(", ").collect();
        let cipher = line
            .rsplit("Cipher is ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if parts.len() >= 3 && cipher != "(NONE)" {
            return Ok(Probe::Connected {
                protocol: parts[1].to_owned(),
                cipher,
            });
        }
    }
    Ok(Probe::Refused(first_error(&text)))
}

fn first_error(text: &str) -> String {
    text.lines()
        .find(|l| l.contains("alert") || l.contains("error") || l.contains("errno"))
        .unwrap_or("handshake failed")
        .chars()
        .take(120)
        .collect()
}

/// One probe's result: what was tried, the requirement, what happened, and whether that
/// is what FAPI asks for.
#[derive(Debug, Clone)]
struct Outcome {
    desc: String,
    req: &'static str,
    msg: String,
    ok: bool,
}

fn describe(p: &Probe) -> String {
    match p {
        Probe::Connected { protocol, cipher } => format!("connected {protocol} {cipher}"),
        Probe::Refused(e) => format!("refused ({e})"),
        Probe::Unsupported(e) => format!("not testable with local OpenSSL ({e})"),
    }
}

/// Probe each endpoint (deduplicated by host:port). `back_channel` endpoints must accept
/// only the BCP 195 recommended TLS 1.2 suites.
pub async fn check_endpoints(log: &mut Log, endpoints: &[(&str, String, bool)]) {
    if tokio::process::Command::new("openssl")
        .arg("version")
        .output()
        .await
        .is_err()
    {
        log.warn(
            "FAPI2-SP-FINAL-5.2.1",
            "openssl is not installed: TLS version and cipher checks not run",
        );
        return;
    }
    let mut cache: HashMap<(String, bool), Vec<Outcome>> = HashMap::new();
    for (name, url, back) in endpoints {
        let Ok(u) = url::Url::parse(url) else {
            log.fail(
                "FAPI2-SP-FINAL-5.2.1-1",
                format!("{name}: unparseable URL {url}"),
            );
            continue;
        };
        let host = u.host_str().unwrap_or_default().to_owned();
        let hostport = format!("{host}:{}", u.port_or_known_default().unwrap_or(443));
        if u.scheme() != "https" {
            log.fail("FAPI2-SP-FINAL-5.2.1-1", format!("{name} is not https"));
            continue;
        }
        let key = (hostport.clone(), *back);
        if !cache.contains_key(&key) {
            let results = probe(&hostport, &host, *back).await;
            cache.insert(key.clone(), results);
        }
        for o in cache.get(&key).cloned().unwrap_or_default() {
            let Outcome {
                desc: probe_desc,
                req,
                msg,
                ok,
            } = o;
            log.evidence(
                "tls",
                format!("{name}: openssl s_client {hostport} {probe_desc}"),
                None,
                None,
                Some(msg.clone()),
            );
            if req == "RFC9325-3.1.1" && probe_desc == "-tls1_3" {
                log.should(ok, req, format!("{name}: TLS 1.3 supported ({msg})"));
            } else if !msg.starts_with("not testable") {
                log.check(ok, req, format!("{name}: {probe_desc}: {msg}"));
            } else {
                log.note(format!("{name}: {probe_desc}: {msg}"));
            }
        }
    }
}

async fn probe(hostport: &str, host: &str, back: bool) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut run =
        |desc: String, req: &'static str, p: anyhow::Result<Probe>, want_connect: bool| {
            let (msg, ok) = match &p {
                Ok(p @ Probe::Connected { .. }) => (describe(p), want_connect),
                Ok(p @ Probe::Refused(_)) => (describe(p), !want_connect),
                Ok(p @ Probe::Unsupported(_)) => (describe(p), true),
                Err(e) => (format!("probe failed: {e}"), false),
            };
            out.push(Outcome { desc, req, msg, ok });
        };
    let suites = if back {
        RECOMMENDED_TLS12
    } else {
        ALLOWED_TLS12
    };
    run(
        "TLS 1.2+ with BCP 195 suites".into(),
        "FAPI2-SP-FINAL-5.2.1-2",
        s_client(hostport, host, &["-cipher", suites]).await,
        true,
    );
    run(
        "-tls1".into(),
        "FAPI2-SP-FINAL-5.2.1-2",
        s_client(hostport, host, &["-tls1", "-cipher", "ALL:@SECLEVEL=0"]).await,
        false,
    );
    run(
        "-tls1_1".into(),
        "FAPI2-SP-FINAL-5.2.1-2",
        s_client(hostport, host, &["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"]).await,
        false,
    );
    let t13 = s_client(hostport, host, &["-tls1_3"]).await;
    let has13 = matches!(t13, Ok(Probe::Connected { .. }));
    run("-tls1_3".into(), "RFC9325-3.1.1", t13, true);
    if has13 {
        let p = s_client(hostport, host, &[]).await;
        let (msg, ok) = match &p {
            Ok(c @ Probe::Connected { protocol, .. }) => (describe(c), protocol == "TLSv1.3"),
            Ok(other) => (describe(other), false),
            Err(e) => (format!("probe failed: {e}"), false),
        };
        out.push(Outcome {
            desc: "default (TLS 1.3 preferred)".into(),
            req: "RFC9325-3.1.1",
            msg,
            ok,
        });
    }
    if back {
        let bad = format!(
            "ALL:COMPLEMENTOFALL:!{}:@SECLEVEL=0",
            RECOMMENDED_TLS12.replace(':', ":!")
        );
        let p = s_client(hostport, host, &["-tls1_2", "-cipher", &bad]).await;
        let (msg, ok) = match &p {
            Ok(c @ Probe::Connected { .. }) => (describe(c), false),
            Ok(other) => (describe(other), true),
            Err(e) => (format!("probe failed: {e}"), false),
        };
        out.push(Outcome {
            desc: "-tls1_2 with only non-recommended suites".into(),
            req: "FAPI2-SP-FINAL-5.2.2",
            msg,
            ok,
        });
    }
    out
}
