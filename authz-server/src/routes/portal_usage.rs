//! The portal's usage pages (issue 9): what the gateway metered for an org's apps —
//! calls over time, errors, latency percentiles, top endpoints, calls per app — drawn on
//! the server as SVG, every call as CSV, and the monthly statement priced by plan.
//! Every member of the org may read them (viewers included); non-members get 404.

use std::sync::Arc;

use authz_core::OAuthError;
use authz_store::UsageFilter;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use consent_ui::portal as pui;
use serde::Deserialize;

use crate::routes::portal::{
    Dev, not_found, portal, render, role, server_error, signed_in, store_err,
};
use crate::state::AppState;

/// Periods offered, in days.
const PERIODS: [i64; 3] = [1, 7, 30];
/// Most rows in one CSV download.
const CSV_MAX_ROWS: i64 = 100_000;

#[derive(Deserialize)]
pub struct PeriodQuery {
    days: Option<i64>,
}

#[derive(Deserialize)]
pub struct MonthQuery {
    month: Option<String>,
}

/// The signed-in member and the org, or the answer (sign-in, 404).
async fn member_org(
    st: &AppState,
    headers: &HeaderMap,
    org_id: &str,
) -> Result<(Dev, authz_store::OrgRecord), Response> {
    let dev = signed_in(st, headers, None).await?;
    let nav = dev.nav();
    if role(st, org_id, &dev).await?.is_none() {
        return Err(not_found(Some(&nav)));
    }
    match portal(st)?.find_org(org_id).await {
        Ok(Some(o)) => Ok((dev, o)),
        Ok(None) => Err(not_found(Some(&nav))),
        Err(e) => Err(store_err(e)),
    }
}

// The error is the page to answer with, as in the portal's other helpers.
#[allow(clippy::result_large_err)]
fn usage_store(st: &AppState) -> Result<&dyn authz_store::UsageStore, Response> {
    st.store
        .usage()
        .ok_or_else(|| server_error(&OAuthError::server_error("no usage store")))
}

fn period(q: &PeriodQuery) -> i64 {
    q.days.filter(|d| PERIODS.contains(d)).unwrap_or(7)
}

fn filter(st: &AppState, org_id: &str, days: i64) -> UsageFilter {
    let to_ms = st.clock.now_ms() + 1;
    UsageFilter {
        org_id: Some(org_id.to_owned()),
        client_id: None,
        from_ms: to_ms - days * 86_400_000,
        to_ms,
    }
}

fn ms_text(us: i64) -> String {
    if us < 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{} ms", us / 1000)
    }
}

/// `YYYY-MM` of the platform clock's current month.
fn this_month(st: &AppState) -> (i32, u8) {
    time::OffsetDateTime::from_unix_timestamp(st.clock.now())
        .map(|t| (t.year(), u8::from(t.month())))
        .unwrap_or((1970, 1))
}

fn parse_month(s: &str) -> Option<(i32, u8)> {
    let (y, m) = s.split_once('-')?;
    let (y, m) = (y.parse::<i32>().ok()?, m.parse::<u8>().ok()?);
    ((2000..=9999).contains(&y) && (1..=12).contains(&m)).then_some((y, m))
}

/// `GET /portal/orgs/{org}/usage?days=1|7|30`.
pub async fn get_usage(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let (dev, org) = match member_org(&st, &headers, &org_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let u = match usage_store(&st) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let days = period(&q);
    let f = filter(&st, &org.id, days);
    // Hour buckets for a day, day buckets beyond.
    let bucket_ms = if days == 1 { 3_600_000 } else { 86_400_000 };
    let report = match crate::usage::report(u, &f, bucket_ms, 10).await {
        Ok(r) => r,
        Err(e) => return store_err(e),
    };
    let apps = match u.usage_by_client(&f).await {
        Ok(a) => a,
        Err(e) => return store_err(e),
    };
    let (y, m) = this_month(&st);
    let statement = match crate::usage::monthly_statement(
        u,
        &st.config.plans,
        &st.config.billing_currency,
        &org.id,
        y,
        m,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return store_err(e),
    };
    let s = &report.summary;
    let page = pui::UsagePage {
        org_id: org.id.clone(),
        org_name: org.name.clone(),
        days,
        period: if days == 1 {
            "over the last 24 hours".into()
        } else {
            format!("over the last {days} days")
        },
        calls: s.calls,
        errors: s.errors,
        error_rate: format!("{:.1} %", s.error_rate() * 100.0),
        p50: ms_text(s.p50_us),
        p95: ms_text(s.p95_us),
        p99: ms_text(s.p99_us),
        calls_svg: report.calls_svg,
        endpoints_svg: report.endpoints_svg,
        top: report
            .top
            .iter()
            .map(|e| {
                (
                    e.server.clone(),
                    format!("{} {}", e.method, e.endpoint),
                    e.calls,
                    e.errors,
                    ms_text(e.avg_latency_us),
                )
            })
            .collect(),
        apps: apps
            .into_iter()
            .map(|a| (a.client_id, a.plan, a.calls, a.billable))
            .collect(),
        month: format!("{y:04}-{m:02}"),
        statement_html: statement
            .as_ref()
            .map(consent_ui::usage::statement_html)
            .unwrap_or_default(),
    };
    render(pui::render_usage(Some(&dev.nav()), &page), StatusCode::OK)
}

fn csv(name: &str, body: String) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET /portal/orgs/{org}/usage.csv?days=…`: every metered call of the period.
pub async fn get_usage_csv(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let (_, org) = match member_org(&st, &headers, &org_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let u = match usage_store(&st) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let days = period(&q);
    match u
        .list_api_calls(&filter(&st, &org.id, days), CSV_MAX_ROWS)
        .await
    {
        Ok(calls) => csv(
            &format!("usage-{}-{days}d.csv", org.id),
            crate::usage::calls_csv(&calls),
        ),
        Err(e) => store_err(e),
    }
}

/// `GET /portal/orgs/{org}/statement.csv?month=YYYY-MM` (default: this month).
pub async fn get_statement_csv(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(org_id): Path<String>,
    Query(q): Query<MonthQuery>,
) -> Response {
    let (dev, org) = match member_org(&st, &headers, &org_id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let u = match usage_store(&st) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (y, m) = match q.month.as_deref() {
        None => this_month(&st),
        Some(s) => match parse_month(s) {
            Some(x) => x,
            None => {
                return crate::routes::portal::message(
                    Some(&dev.nav()),
                    StatusCode::BAD_REQUEST,
                    "No such month",
                    "The month must be written YYYY-MM, for example 2026-11.",
                    ("Back to usage", &format!("/portal/orgs/{}/usage", org.id)),
                );
            }
        },
    };
    match crate::usage::monthly_statement(
        u,
        &st.config.plans,
        &st.config.billing_currency,
        &org.id,
        y,
        m,
    )
    .await
    {
        Ok(Some(s)) => csv(
            &format!("statement-{}-{y:04}-{m:02}.csv", org.id),
            consent_ui::usage::statement_csv(&s),
        ),
        Ok(None) => not_found(Some(&dev.nav())),
        Err(e) => store_err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_periods() {
        assert_eq!(parse_month("2026-11"), Some((2026, 11)));
        assert_eq!(parse_month("2026-13"), None);
        assert_eq!(parse_month("26-1x"), None);
        assert_eq!(period(&PeriodQuery { days: Some(30) }), 30);
        assert_eq!(period(&PeriodQuery { days: Some(9999) }), 7);
        assert_eq!(ms_text(1_500), "1.5 ms");
        assert_eq!(ms_text(25_000), "25 ms");
    }
}
