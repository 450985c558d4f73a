//! The gateway in front of every API (issue 9, ADR 0015): plans with per-client and
//! per-org rates and a daily org quota, 429 with `Retry-After` and `RateLimit-*`
//! headers on the AS back channel and the resource server, the unauthenticated budget
//! per certificate, counters shared by instances through Redis, and metering with the
//! analytics built on it.

use authz_server::clock::Clock;
use authz_server::config::{Config, PlanConfig};
use authz_store::{UsageFilter, UsageStore};
use fapi_conformance::Tpp;
use reqwest::Method;
use std::time::Duration;
use wekeza_tests::{Reply, TestPlatform};

/// A plan so slow to refill (one request per 1,000 s) that only the burst counts.
fn tiny(client_burst: u32, org_burst: u32, quota: u64) -> PlanConfig {
    let rate = |b: u32| if b == 0 { 0.0 } else { 0.001 };
    PlanConfig {
        client_rate_per_second: rate(client_burst),
        client_burst,
        org_rate_per_second: rate(org_burst),
        org_burst,
        org_daily_quota: quota,
        price_per_1000_minor: 50,
    }
}

fn with_tiny(c: &mut Config) {
    c.plan_cache_secs = 0;
    c.plans.insert("tiny".into(), tiny(2, 3, 0));
    c.plans.insert("quota".into(), tiny(0, 0, 2));
}

fn usage(p: &TestPlatform) -> &dyn UsageStore {
    p.state().store.usage().expect("the SQL store keeps usage")
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A resource-server call that needs a client-credentials token: reading an
/// account-access consent that does not exist.
async fn rs_call(p: &TestPlatform, tpp: &Tpp, token: &str) -> Reply {
    let url = format!(
        "{}/open-banking/v4.0/aisp/account-access-consents/aac-none",
        p.kit.resource_base_url
    );
    tpp.resource(Method::GET, &url, token, None).await.unwrap()
}

async fn cc_token(tpp: &Tpp) -> String {
    let params = [("grant_type", "client_credentials"), ("scope", "accounts")];
    let r = if tpp.uses_dpop() {
        tpp.token_dpop(&params).await.unwrap()
    } else {
        tpp.token(&params).await.unwrap()
    };
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.str("access_token").unwrap().to_owned()
}

#[tokio::test]
async fn token_endpoint_refuses_the_call_after_the_burst_per_client() {
    let p = TestPlatform::spawn_with(|c| {
        c.plans.insert("sandbox".into(), tiny(3, 0, 0));
    })
    .await;
    for left in ["2", "1", "0"] {
        let r = p.pkjwt.client_credentials("accounts").await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(header(&r, "ratelimit-limit"), "3");
        assert_eq!(header(&r, "ratelimit-remaining"), left);
        assert!(!header(&r, "ratelimit-reset").is_empty());
        assert_eq!(header(&r, "ratelimit-policy"), "3;w=3000");
    }
    // Exactly the fourth call within the burst is refused.
    let r = p.pkjwt.client_credentials("accounts").await.unwrap();
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.error(), "temporarily_unavailable");
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("sandbox plan")
    );
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((900..=1000).contains(&retry), "{retry}");
    assert_eq!(header(&r, "ratelimit-remaining"), "0");
    assert_eq!(header(&r, "cache-control"), "no-store");
    // PAR is the same client's allowance.
    let par = p
        .pkjwt
        .par(&fapi_conformance::Pkce::new(), "s", "n", &[])
        .await
        .unwrap();
    assert_eq!(par.status, 429);
    // Another client (its own org on the sandbox plan) is unaffected.
    let other = p.mtls.client_credentials("accounts").await.unwrap();
    assert_eq!(other.status, 200, "{:?}", other.body);
    assert_eq!(header(&other, "ratelimit-remaining"), "2");
    // Discovery and JWKS are never limited.
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&p.kit.ca_cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = http
            .get(format!("{}/jwks", p.kit.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ratelimit-limit").is_none());
    }
    p.finish().await;
}

#[tokio::test]
async fn resource_server_limits_per_client_and_per_org() {
    let p = TestPlatform::spawn_with(with_tiny).await;
    let a = cc_token(&p.pkjwt).await;
    let b = cc_token(&p.mtls).await;
    // Both clients now in one org on the tiny plan: 2 per client, 3 for the org.
    for tpp in [&p.pkjwt, &p.mtls] {
        usage(&p)
            .set_client_plan(&tpp.client_id, "acme", "tiny", 0)
            .await
            .unwrap();
    }
    let r = rs_call(&p, &p.pkjwt, &a).await;
    assert!(r.status.as_u16() < 429, "{:?}", r.body);
    assert_eq!(header(&r, "ratelimit-limit"), "2");
    assert_eq!(header(&r, "ratelimit-remaining"), "1");
    assert_eq!(header(&r, "ratelimit-policy"), "2;w=2000, 3;w=3000");
    let r = rs_call(&p, &p.pkjwt, &a).await;
    assert!(r.status.as_u16() < 429, "{:?}", r.body);
    // The client's third call: its own limit.
    let r = rs_call(&p, &p.pkjwt, &a).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header(&r, "ratelimit-limit"), "2");
    assert_eq!(r.body["Code"], "429 TooManyRequests");
    assert_eq!(r.body["Errors"][0]["ErrorCode"], "UK.OBIE.UnexpectedError");
    assert!(!header(&r, "x-fapi-interaction-id").is_empty());
    // The other client's first call takes the org's last request...
    let r = rs_call(&p, &p.mtls, &b).await;
    assert!(r.status.as_u16() < 429, "{:?}", r.body);
    assert_eq!(header(&r, "ratelimit-limit"), "3");
    assert_eq!(header(&r, "ratelimit-remaining"), "0");
    // ...so its second is refused by the org, though its own allowance is not spent.
    let r = rs_call(&p, &p.mtls, &b).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(header(&r, "ratelimit-limit"), "3");
    assert!(r.body["Message"].as_str().unwrap().contains("organisation"));
    // A client outside the org is not affected.
    let c = cc_token(&p.dpop).await;
    let r = rs_call(&p, &p.dpop, &c).await;
    assert!(r.status.as_u16() < 429, "{:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn the_daily_quota_refuses_until_the_next_day() {
    let mut p = TestPlatform::spawn_with(with_tiny).await;
    // Its client assertions follow the server clock, which this test moves a day on.
    let c = p.clock.clone();
    p.pkjwt.clock = std::sync::Arc::new(move || c.now());
    usage(&p)
        .set_client_plan(&p.pkjwt.client_id, "q-org", "quota", 0)
        .await
        .unwrap();
    // The token call is the first of the day's two, the RS call the second.
    let t = cc_token(&p.pkjwt).await;
    let r = rs_call(&p, &p.pkjwt, &t).await;
    assert!(r.status.as_u16() < 429, "{:?}", r.body);
    assert_eq!(header(&r, "ratelimit-limit"), "2");
    assert_eq!(header(&r, "ratelimit-remaining"), "0");
    assert_eq!(header(&r, "ratelimit-policy"), "2;w=86400");
    let r = rs_call(&p, &p.pkjwt, &t).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.body["Message"].as_str().unwrap().contains("daily quota"));
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&retry));
    let r = p.pkjwt.client_credentials("accounts").await.unwrap();
    assert_eq!(r.status, 429);
    // The next UTC day has a fresh quota.
    p.clock.advance(86_400);
    let t = cc_token(&p.pkjwt).await;
    let r = rs_call(&p, &p.pkjwt, &t).await;
    assert!(r.status.as_u16() < 429, "{:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn requests_that_never_authenticate_are_cut_off_per_certificate() {
    let p = TestPlatform::spawn_with(|c| {
        c.gateway_unauthenticated_per_second = 0.001;
        c.gateway_unauthenticated_burst = 3;
    })
    .await;
    let bad = || {
        p.pkjwt.token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
        ])
    };
    for _ in 0..3 {
        let r = bad().await.unwrap();
        assert!(matches!(r.status.as_u16(), 400 | 401), "{:?}", r.body);
    }
    // The fourth is refused before client authentication, and so is this certificate's
    // next request even if it would authenticate.
    let r = bad().await.unwrap();
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.error(), "temporarily_unavailable");
    assert!(!header(&r, "retry-after").is_empty());
    assert_eq!(
        p.pkjwt.client_credentials("accounts").await.unwrap().status,
        429
    );
    // Another certificate is unaffected.
    assert_eq!(
        p.mtls.client_credentials("accounts").await.unwrap().status,
        200
    );
    p.finish().await;
}

#[tokio::test]
async fn instances_share_counters_in_scaled_mode_only() {
    let p = TestPlatform::spawn_with(|c| {
        c.plans.insert("sandbox".into(), tiny(2, 0, 0));
    })
    .await;
    let cfg = p.state().config.clone();
    let q = TestPlatform::spawn_with(|c2| {
        c2.database_url = cfg.database_url.clone();
        c2.database_schema = cfg.database_schema.clone();
        c2.redis_url = cfg.redis_url.clone();
        c2.redis_key_prefix = cfg.redis_key_prefix.clone();
        c2.keys_dir = cfg.keys_dir.clone();
        c2.certs_dir = cfg.certs_dir.clone();
        c2.plans = cfg.plans.clone();
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            p.pkjwt.client_credentials("accounts").await.unwrap().status,
            200
        );
    }
    let r = q.pkjwt.client_credentials("accounts").await.unwrap();
    if wekeza_tests::backend() == "scaled" {
        // One counter in Redis: the other instance refuses the third call.
        assert_eq!(r.status, 429, "{:?}", r.body);
    } else {
        // Embedded mode counts per instance (ADR 0015).
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(header(&r, "ratelimit-remaining"), "1");
    }
    q.finish().await;
    p.finish().await;
}

/// Waits (bounded) until the writer has stored at least `n` calls of `f`.
async fn metered(p: &TestPlatform, f: &UsageFilter, n: usize) -> Vec<authz_store::ApiCall> {
    for _ in 0..100 {
        let rows = usage(p).list_api_calls(f, 1000).await.unwrap();
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metered calls did not arrive");
}

#[tokio::test]
async fn every_call_is_metered_and_the_analytics_report_exactly_those_calls() {
    let p = TestPlatform::spawn().await;
    let start = p.clock.now() * 1000 - 1000;
    let org = "metered-org";
    usage(&p)
        .set_client_plan(&p.pkjwt.client_id, org, "standard", 0)
        .await
        .unwrap();
    let t = cc_token(&p.pkjwt).await;
    let rs1 = rs_call(&p, &p.pkjwt, &t).await;
    let rs2 = rs_call(&p, &p.pkjwt, &t).await;
    let url = format!(
        "{}/open-banking/v4.0/aisp/account-access-consents",
        p.kit.resource_base_url
    );
    let body = serde_json::json!({"Data": {"Permissions": ["ReadAccountsBasic"],
        "ExpirationDateTime": "2099-01-01T00:00:00Z"}, "Risk": {}});
    let created = p
        .pkjwt
        .resource(Method::POST, &url, &t, Some(&body))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{:?}", created.body);
    // A call with a forged token identifies no client.
    let forged = rs_call(&p, &p.pkjwt, "eyJhbGciOiJFUzI1NiJ9.e30.AAAA").await;
    assert_eq!(forged.status, 401);

    let f = UsageFilter {
        org_id: Some(org.into()),
        client_id: None,
        from_ms: start,
        to_ms: p.clock.now() * 1000 + 60_000,
    };
    let rows = metered(&p, &f, 4).await;
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let token_row = &rows[0];
    assert_eq!(
        (
            token_row.server.as_str(),
            token_row.method.as_str(),
            token_row.endpoint.as_str()
        ),
        ("as", "POST", "/token")
    );
    assert_eq!(token_row.status, 200);
    assert_eq!(
        token_row.client_id.as_deref(),
        Some(p.pkjwt.client_id.as_str())
    );
    assert_eq!(token_row.plan.as_deref(), Some("standard"));
    assert!(token_row.req_bytes > 0 && token_row.resp_bytes > 0 && token_row.latency_us > 0);
    let template = "/open-banking/v4.0/aisp/account-access-consents/{ConsentId}";
    let rs_rows: Vec<_> = rows.iter().filter(|r| r.endpoint == template).collect();
    assert_eq!(rs_rows.len(), 2, "the raw path never appears: {rows:#?}");
    assert_eq!(rs_rows[0].status, i64::from(rs1.status.as_u16()));
    assert_eq!(rs_rows[1].status, i64::from(rs2.status.as_u16()));
    assert!(rows.iter().any(
        |r| r.endpoint == "/open-banking/v4.0/aisp/account-access-consents"
            && r.method == "POST"
            && r.status == 201
    ));
    // The forged call is metered without a client.
    let anon = UsageFilter {
        org_id: None,
        ..f.clone()
    };
    let all = metered(&p, &anon, 5).await;
    assert!(
        all.iter()
            .any(|r| r.client_id.is_none() && r.status == 401 && r.endpoint == template)
    );

    // Analytics over exactly those four calls.
    let errors = rows.iter().filter(|r| r.status >= 400).count() as i64;
    let report = authz_server::usage::report(usage(&p), &f, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(report.summary.calls, 4);
    assert_eq!(report.summary.errors, errors);
    assert_eq!(report.series.iter().map(|b| b.calls).sum::<i64>(), 4);
    let mut lat: Vec<i64> = rows.iter().map(|r| r.latency_us).collect();
    lat.sort_unstable();
    assert_eq!(report.summary.p50_us, lat[1]);
    assert_eq!(report.summary.p99_us, lat[3]);
    assert_eq!(report.top[0].endpoint, template);
    assert_eq!(report.top[0].calls, 2);
    assert!(report.calls_svg.contains(r#"role="img""#));
    assert!(report.endpoints_svg.contains(&format!("GET {template}: 2")));
    let csv = authz_server::usage::calls_csv(&rows);
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.contains(&format!(
        ",as,{},{org},standard,POST,/token,200,",
        p.pkjwt.client_id
    )));
    let series = authz_server::usage::series_csv(&report.series);
    assert!(series.starts_with("bucket_start,calls,errors\r\n"));

    // The month's statement prices the billable (below 400) calls by plan.
    let now = time::OffsetDateTime::from_unix_timestamp(p.clock.now()).unwrap();
    let st = authz_server::usage::monthly_statement(
        usage(&p),
        &p.state().config.plans,
        "KES",
        org,
        now.year(),
        u8::from(now.month()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(st.lines.len(), 1);
    assert_eq!(st.lines[0].calls, 4);
    assert_eq!(st.lines[0].billable, 4 - errors);
    assert_eq!(st.lines[0].price_per_1000_minor, 50);
    let html = consent_ui::usage::statement_html(&st);
    assert!(html.contains(&format!(
        "<td>{}</td><td>standard</td><td>4</td>",
        p.pkjwt.client_id
    )));

    // Retention: nothing is old yet; 91 days later all of it is.
    let gw = p.platform.as_ref().unwrap().gateway.clone();
    assert_eq!(gw.run_retention().await.unwrap(), 0);
    p.clock.advance(91 * 86_400);
    assert!(gw.run_retention().await.unwrap() >= 5);
    assert!(
        usage(&p)
            .list_api_calls(&anon, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(gw.dropped(), 0);
    p.finish().await;
}
