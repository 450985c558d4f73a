//! The network layer (FAPI 2.0 §5.2): client certificates from untrusted CAs abort the
//! handshake, the browser listener never asks for a certificate, TLS 1.2 only with the
//! BCP 195 recommended suites, nothing older than TLS 1.2. Probed with the `openssl` CLI,
//! which can offer exactly the versions and suites a test needs.

use crate::client_auth::{form, http_with, reply, sandbox_ca};
use devpki::DevCa;
use fapi_conformance::tpp::https_client;
use std::process::{Command, Stdio};
use wekeza_tests::TestPlatform;

struct Probe {
    /// The handshake completed (openssl exit status 0 and a negotiated cipher).
    ok: bool,
    output: String,
}

/// `openssl s_client` against one of the platform's ports. Runs on a blocking thread:
/// the server lives on this test's runtime.
async fn s_client(p: &TestPlatform, port: u16, args: &[&str]) -> Probe {
    let ca = p.kit.ca_cert.clone();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("openssl")
            .arg("s_client")
            .arg("-connect")
            .arg(format!("127.0.0.1:{port}"))
            .args(["-servername", "localhost", "-CAfile"])
            .arg(&ca)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("openssl is installed");
        let output = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let negotiated = output
            .lines()
            .any(|l| l.contains("Cipher is ") && !l.contains("(NONE)"));
        Probe {
            ok: out.status.success() && negotiated,
            output,
        }
    })
    .await
    .unwrap()
}

fn ports(p: &TestPlatform) -> [(&'static str, u16); 2] {
    let pl = p.platform.as_ref().unwrap();
    [("web", pl.web_addr.port()), ("mtls", pl.mtls_addr.port())]
}

#[tokio::test]
async fn client_certificate_from_untrusted_ca_fails_the_handshake() {
    let p = TestPlatform::spawn().await;
    let ca_pem = std::fs::read(&p.kit.ca_cert).unwrap();
    let url = p.mtls.endpoint("token_endpoint");
    let body = crate::client_auth::encode(&form(
        &p,
        &p.mtls,
        &[("grant_type", "client_credentials"), ("scope", "accounts")],
    ));
    // Control: the registered subject from the trusted CA gets an HTTP answer (200).
    let trusted = sandbox_ca(&p)
        .issue_client(&p.mtls.client_id, "Wekeza Sandbox TPP", None)
        .unwrap();
    let r = http_with(&p, &trusted)
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "control");

    // Same subject, same client_id, but issued by a CA the server does not trust.
    let rogue_ca = DevCa::generate("Wekeza Sandbox CA").unwrap();
    let rogue = rogue_ca
        .issue_client(
            &p.mtls.client_id,
            "Wekeza Sandbox TPP",
            Some(&format!("{}.sandbox.wekeza.test", p.mtls.client_id)),
        )
        .unwrap();
    let identity = format!("{}{}", rogue.cert_pem, rogue.key_pem);
    let http = https_client(&ca_pem, Some(identity.as_bytes())).unwrap();
    for path in ["token_endpoint", "userinfo_endpoint"] {
        let res = http
            .post(p.mtls.endpoint(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await;
        assert!(
            res.is_err(),
            "{path}: an HTTP response came back: {:?}",
            res.map(|r| r.status())
        );
    }
    // The same with openssl: the server aborts the handshake with an alert.
    let dir = p.dir.join("rogue");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &rogue.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &rogue.key_pem).unwrap();
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let mtls_port = p.platform.as_ref().unwrap().mtls_addr.port();
    let probe = s_client(&p, mtls_port, &["-tls1_2", "-cert", &cert, "-key", &key]).await;
    assert!(
        !probe.ok,
        "TLS 1.2 handshake with a rogue certificate:\n{}",
        probe.output
    );
    // Control for the probe itself: no certificate at all is allowed at the handshake.
    let probe = s_client(&p, mtls_port, &["-tls1_2"]).await;
    assert!(probe.ok, "{}", probe.output);
    p.finish().await;
}

#[tokio::test]
async fn browser_listener_does_not_request_a_client_certificate() {
    let p = TestPlatform::spawn().await;
    let [(_, web), (_, mtls)] = ports(&p);
    for version in ["-tls1_2", "-tls1_3"] {
        let probe = s_client(&p, web, &[version]).await;
        assert!(probe.ok, "web {version}:\n{}", probe.output);
        assert!(
            probe.output.contains("No client certificate CA names sent"),
            "web {version}:\n{}",
            probe.output
        );
        // Control: the mTLS listener does ask, naming the sandbox CA.
        let probe = s_client(&p, mtls, &[version]).await;
        assert!(probe.ok, "mtls {version}:\n{}", probe.output);
        assert!(
            probe
                .output
                .contains("Acceptable client certificate CA names"),
            "mtls {version}:\n{}",
            probe.output
        );
    }
    p.finish().await;
}

#[tokio::test]
async fn tls_1_1_and_older_are_refused() {
    let p = TestPlatform::spawn().await;
    for (name, port) in ports(&p) {
        // SECLEVEL=0 so that openssl itself is willing to offer the old versions.
        for version in ["-tls1_1", "-tls1"] {
            let probe = s_client(&p, port, &[version, "-cipher", "DEFAULT@SECLEVEL=0"]).await;
            assert!(
                !probe.ok,
                "{name} {version} was accepted:\n{}",
                probe.output
            );
            // The refusal came from the server (an alert in answer to the ClientHello),
            // not from openssl declining to try.
            assert!(
                probe.output.contains("SSL alert number")
                    && !probe.output.contains("no protocols available"),
                "{name} {version}:\n{}",
                probe.output
            );
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn tls_1_2_with_non_fapi_cipher_suites_is_refused() {
    let p = TestPlatform::spawn().await;
    for (name, port) in ports(&p) {
        for suite in [
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            "ECDHE-ECDSA-AES128-SHA256",
            "ECDHE-ECDSA-AES256-SHA384",
            "ECDHE-ECDSA-AES128-SHA",
        ] {
            let probe = s_client(&p, port, &["-tls1_2", "-cipher", suite]).await;
            assert!(!probe.ok, "{name} accepted {suite}:\n{}", probe.output);
            assert!(
                probe.output.contains("handshake failure"),
                "{name} {suite}:\n{}",
                probe.output
            );
        }
    }
    p.finish().await;
}

#[tokio::test]
async fn tls_1_2_with_fapi_suites_and_tls_1_3_are_accepted() {
    let p = TestPlatform::spawn().await;
    for (name, port) in ports(&p) {
        for suite in [
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ] {
            let probe = s_client(&p, port, &["-tls1_2", "-cipher", suite]).await;
            assert!(probe.ok, "{name} refused {suite}:\n{}", probe.output);
            assert!(probe.output.contains(suite), "{name}:\n{}", probe.output);
        }
        let probe = s_client(&p, port, &["-tls1_3"]).await;
        assert!(probe.ok, "{name} refused TLS 1.3:\n{}", probe.output);
        assert!(
            probe.output.contains("TLSv1.3"),
            "{name}:\n{}",
            probe.output
        );
    }
    p.finish().await;
}

#[tokio::test]
async fn health_endpoints_answer_200_on_the_web_listener() {
    let p = TestPlatform::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let r = p
            .pkjwt
            .http_no_cert
            .get(format!("{}{path}", p.kit.issuer))
            .send()
            .await
            .unwrap();
        let r = reply(r).await;
        assert_eq!(r.status, 200, "{path}");
    }
    p.finish().await;
}
