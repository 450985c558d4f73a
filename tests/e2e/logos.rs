//! TPP logos (issue 6): shown on the consent page from the platform's own copy, so the
//! customer's browser contacts nobody else; copied in at registration (`logo_uri` as a
//! data: URI or fetched once over https), checked (raster images only, bounded), served
//! inert, replaced or removed with the registration.

use base64::Engine as _;
use fapi_conformance::Pkce;
use reqwest::StatusCode;
use serde_json::json;
use wekeza_tests::TestPlatform;

use crate::registration::{Resp, pkjwt_body, r_body_for_update, register, send, statement};

/// A browser-like HTTPS client that trusts the sandbox CA (no client certificate).
fn web(p: &TestPlatform) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&p.kit.ca_cert).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .unwrap()
}

fn data_uri(ct: &str, bytes: &[u8]) -> String {
    format!(
        "data:{ct};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

async fn fetch(
    http: &reqwest::Client,
    url: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = http.get(url).send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn sandbox_tpp_logo_is_served_by_us_and_shown_on_the_consent_page() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let par = tpp
        .par(&Pkce::new(), "s-logo", "n-logo", &[])
        .await
        .unwrap();
    assert_eq!(par.status, 201, "{:?}", par.body);
    let agent = p.customer();
    let login = agent
        .open(&tpp.authorize_url(par.str("request_uri").unwrap()))
        .await
        .unwrap();
    let c = &p.kit.customer;
    let consent = agent
        .sign_in(&login, &c.username, &c.password, &p.fresh_otp())
        .await
        .unwrap();
    assert_eq!(consent.status, 200, "{}", consent.html);
    // The logo is ours: a same-origin path with the digest, never the TPP's URL.
    let at = consent
        .html
        .find(r#"id="client-logo""#)
        .unwrap_or_else(|| panic!("no logo: {}", consent.html));
    let tail = &consent.html[at..];
    let start = tail.find(r#"src=""#).unwrap() + 5;
    let src = &tail[start..start + tail[start..].find('"').unwrap()];
    assert!(
        src.starts_with(&format!("/clients/{}/logo?v=", tpp.client_id)),
        "{src}"
    );
    assert!(!consent.html.contains("id=\"client-initial\""));

    let http = web(&p);
    let (status, h, bytes) = fetch(&http, &format!("{}{src}", p.kit.issuer)).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "default-src 'none'; sandbox");
    assert_eq!(h["cross-origin-resource-policy"], "same-origin");
    assert_eq!(
        authz_core::logo::check_logo(&bytes, Some("image/png")),
        Ok(authz_core::logo::LogoType::Png)
    );
    // The digest in the page is the served image's.
    let etag = h["etag"].to_str().unwrap().trim_matches('"').to_owned();
    assert!(src.ends_with(&etag[..16]), "{src} vs {etag}");
    // Revalidation answers 304 without the bytes.
    let r = http
        .get(format!("{}{src}", p.kit.issuer))
        .header("if-none-match", format!("\"{etag}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    // Each sandbox TPP has its own.
    let other = format!("{}/clients/{}/logo", p.kit.issuer, p.pkjwt.client_id);
    let (s2, _, b2) = fetch(&http, &other).await;
    assert_eq!(s2, 200);
    assert_ne!(b2, bytes);
    // No logo, no content.
    let (s3, _, _) = fetch(
        &http,
        &format!("{}/clients/no-such-client/logo", p.kit.issuer),
    )
    .await;
    assert_eq!(s3, 404);
    p.finish().await;
}

#[tokio::test]
async fn registration_copies_the_logo_in_checks_it_and_removes_it_with_the_client() {
    let p = TestPlatform::spawn().await;
    let http = &p.pkjwt.http;
    let web = web(&p);
    let png = authz_server::logo::identicon_png("a registered app").unwrap();

    // Inline (data: URI): stored as sent, served from our URL, announced as logo_uri.
    let (mut b, _) = pkjwt_body(&p, &statement(&p, json!({})));
    b["logo_uri"] = json!(data_uri("image/png", &png));
    let r = register(http, &p.pkjwt, &b).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["client_id"].as_str().unwrap().to_owned();
    let ours = format!("{}/clients/{id}/logo", p.kit.issuer);
    assert_eq!(r.body["logo_uri"], ours.as_str());
    let (s, h, bytes) = fetch(&web, &ours).await;
    assert_eq!((s.as_u16(), bytes.as_slice()), (200, png.as_slice()));
    assert_eq!(h["content-type"], "image/png");

    // By https URL: fetched once (here, the platform's own copy of a sandbox logo, which
    // the sandbox lets a registration reach over loopback).
    let sandbox_logo = format!("{}/clients/{}/logo", p.kit.issuer, p.mtls.client_id);
    let (_, _, expected) = fetch(&web, &sandbox_logo).await;
    let (mut b2, _) = pkjwt_body(&p, &statement(&p, json!({})));
    b2["logo_uri"] = json!(sandbox_logo);
    let r2 = register(http, &p.pkjwt, &b2).await;
    assert_eq!(r2.status, 201, "{:?}", r2.body);
    let id2 = r2.body["client_id"].as_str().unwrap();
    let (s, _, copied) = fetch(&web, &format!("{}/clients/{id2}/logo", p.kit.issuer)).await;
    assert_eq!((s.as_u16(), copied), (200, expected));

    // The directory's logo is used when the request names none.
    let ssa = statement(
        &p,
        json!({"software_logo_uri": data_uri("image/png", &png)}),
    );
    let (b3, _) = pkjwt_body(&p, &ssa);
    let r3 = register(http, &p.pkjwt, &b3).await;
    assert_eq!(r3.status, 201, "{:?}", r3.body);
    assert!(r3.body["logo_uri"].as_str().unwrap().ends_with("/logo"));

    // Refused, each with a reason, and nothing registered.
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let mut big = png.clone();
    big.resize(64 * 1024 + 1, 0);
    let cases: Vec<(serde_json::Value, Option<serde_json::Value>, &str)> = vec![
        (json!(data_uri("image/svg+xml", svg)), None, "SVG"),
        (
            json!(data_uri("image/png", b"<html>not an image</html>")),
            None,
            "not PNG bytes",
        ),
        (
            json!(data_uri("image/jpeg", &png)),
            None,
            "declared JPEG, PNG bytes",
        ),
        (json!(data_uri("image/png", &big)), None, "too large"),
        (json!("http://tpp.example/logo.png"), None, "plain http"),
        (json!("https://10.1.2.3/logo.png"), None, "private address"),
        (
            json!("https://169.254.169.254/logo.png"),
            None,
            "metadata address",
        ),
        (
            json!(format!("{}/clients/no-such-client/logo", p.kit.issuer)),
            None,
            "404",
        ),
        (
            json!(data_uri("image/png", &png)),
            Some(json!({"software_logo_uri": "https://directory.example/logo.png"})),
            "conflicts with the statement",
        ),
    ];
    for (logo, ssa_extra, why) in cases {
        let ssa = statement(&p, ssa_extra.unwrap_or_else(|| json!({})));
        let (mut b, _) = pkjwt_body(&p, &ssa);
        b["logo_uri"] = logo;
        let r: Resp = register(http, &p.pkjwt, &b).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_client_metadata"),
            "{why}: {:?}",
            r.body
        );
        assert!(
            r.body["error_description"]
                .as_str()
                .unwrap()
                .contains("logo_uri"),
            "{why}: {:?}",
            r.body
        );
    }

    // Update without a logo removes it (RFC 7592 replaces the metadata); with one, sets it.
    let uri = r.body["registration_client_uri"].as_str().unwrap();
    let tok = r.body["registration_access_token"].as_str().unwrap();
    let mut upd = r_body_for_update(&b, &id);
    upd.as_object_mut().unwrap().remove("logo_uri");
    let u = send(http.put(uri).bearer_auth(tok).json(&upd)).await;
    assert_eq!(u.status, 200, "{:?}", u.body);
    assert!(u.body.get("logo_uri").is_none());
    assert_eq!(fetch(&web, &ours).await.0, 404);
    let tok = u.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = authz_server::logo::identicon_png("replaced").unwrap();
    upd["logo_uri"] = json!(data_uri("image/png", &other));
    let u = send(http.put(uri).bearer_auth(&tok).json(&upd)).await;
    assert_eq!(u.status, 200, "{:?}", u.body);
    assert_eq!(fetch(&web, &ours).await.2, other);
    // A bad logo on update changes nothing.
    let tok = u.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    upd["logo_uri"] = json!(data_uri("image/svg+xml", svg));
    let u2 = send(http.put(uri).bearer_auth(&tok).json(&upd)).await;
    assert_eq!(u2.status, 400, "{:?}", u2.body);
    assert_eq!(fetch(&web, &ours).await.2, other);

    // Deregistration takes the logo with it.
    let d = http.delete(uri).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(d.status(), StatusCode::NO_CONTENT);
    assert_eq!(fetch(&web, &ours).await.0, 404);
    p.finish().await;
}
