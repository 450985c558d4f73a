//! Operator metrics on their own port, and `x-fapi-interaction-id` on the AS.

use fapi_conformance::Pkce;
use wekeza_tests::TestPlatform;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn prometheus_metrics_cover_routes_tokens_logins_and_the_resource_server() {
    let port = free_port();
    let p = TestPlatform::spawn_with(|c| c.metrics_port = port).await;
    let addr = p.platform.as_ref().unwrap().metrics_addr.unwrap();
    assert_eq!(addr.port(), port);
    let tokens = p.tokens(&p.pkjwt).await;
    let at = tokens.str("access_token").unwrap().to_owned();
    let cc = p.pkjwt.client_credentials("accounts").await.unwrap();
    assert_eq!(cc.status, 200);
    let r = p
        .pkjwt
        .resource(
            reqwest::Method::GET,
            &format!(
                "{}/open-banking/v4.0/aisp/accounts",
                p.kit.resource_base_url
            ),
            &at,
            None,
        )
        .await
        .unwrap();
    assert!(r.status.as_u16() < 500);
    // A failed sign-in.
    let par = p.pkjwt.par(&Pkce::new(), "s", "n", &[]).await.unwrap();
    let url = p.pkjwt.authorize_url(par.str("request_uri").unwrap());
    let customer = p.customer();
    let login = customer.open(&url).await.unwrap();
    let page = customer
        .post(
            &format!("{}/login", p.kit.issuer),
            &[
                ("csrf", login.csrf().unwrap_or_default().as_str()),
                ("username", "alice"),
                ("password", "wrong"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(page.status, 401);

    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        r#"wekeza_tokens_issued_total{grant_type="authorization_code"}"#,
        r#"wekeza_tokens_issued_total{grant_type="client_credentials"}"#,
        r#"wekeza_logins_total{step="otp",outcome="success"}"#,
        r#"wekeza_logins_total{step="password",outcome="failure"}"#,
        r#"route="/token",status="200""#,
        r#"server="as_mtls",method="POST",route="/par""#,
        r#"server="rs""#,
        r#"route="/open-banking/v4.0/aisp/accounts""#,
        "wekeza_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    // Ids never become label values.
    assert!(!text.contains(&p.kit.customer.username));
    p.finish().await;
}

#[tokio::test]
async fn metrics_are_off_by_default_and_interaction_ids_are_echoed() {
    let p = TestPlatform::spawn().await;
    assert!(p.platform.as_ref().unwrap().metrics_addr.is_none());
    let id = "2f6b1e52-8f0e-4a0c-9d7e-3f1c2b4a5d6e";
    let form = p.pkjwt.par_form(&Pkce::new(), "s", "n", &[]);
    let r = p
        .pkjwt
        .http
        .post(p.pkjwt.endpoint("pushed_authorization_request_endpoint"))
        .header("x-fapi-interaction-id", id)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-fapi-interaction-id"], id);
    // None sent (or not a UUID): one is made up and returned.
    let r = p
        .pkjwt
        .http_no_cert
        .get(format!("{}/jwks", p.kit.issuer))
        .header("x-fapi-interaction-id", "not-a-uuid")
        .send()
        .await
        .unwrap();
    let got = r.headers()["x-fapi-interaction-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(got).is_ok() && got != "not-a-uuid");
    p.finish().await;
}
