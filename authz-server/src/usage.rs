//! Usage analytics for the developer portal (issue 9): what the portal pages call to
//! show an org's or an app's calls. Queries come from `authz_store::UsageStore`
//! (`st.store.usage()`), drawing from `consent_ui::usage`; this module joins them and
//! prices statements by plan.
//!
//! * [`report`]: calls over time (bucketed), error rate, latency percentiles, top
//!   endpoints, with the two charts as SVG.
//! * [`calls_csv`] / [`series_csv`]: CSV export of the raw or the bucketed calls.
//! * [`monthly_statement`]: the org's statement for a calendar month (UTC), per client
//!   and plan, priced per 1,000 billable calls (answered below 400); render it with
//!   `consent_ui::usage::statement_html` / `statement_csv`.

use crate::config::PlanConfig;
use authz_store::{
    ApiCall, EndpointUsage, StoreResult, UsageBucket, UsageFilter, UsageStore, UsageSummary,
};
use consent_ui::usage::{Point, Statement, bar_chart_svg, line_chart_svg, to_csv};
use std::collections::BTreeMap;

/// Everything a usage page shows.
#[derive(Debug, Clone)]
pub struct UsageReport {
    pub series: Vec<UsageBucket>,
    pub summary: UsageSummary,
    pub top: Vec<EndpointUsage>,
    /// Calls over time, a line chart.
    pub calls_svg: String,
    /// Top endpoints by calls, a bar chart.
    pub endpoints_svg: String,
}

fn bucket_label(start_ms: i64, bucket_ms: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(start_ms.div_euclid(1000)) else {
        return start_ms.to_string();
    };
    if bucket_ms >= 86_400_000 {
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
    } else {
        format!(
            "{:02}-{:02} {:02}:{:02}",
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        )
    }
}

/// The usage report of `f` (an org or one client over a period) in buckets of
/// `bucket_ms`, with the `top_n` most called endpoints.
pub async fn report(
    store: &dyn UsageStore,
    f: &UsageFilter,
    bucket_ms: i64,
    top_n: i64,
) -> StoreResult<UsageReport> {
    let series = store.usage_series(f, bucket_ms).await?;
    let summary = store.usage_summary(f).await?;
    let top = store.top_endpoints(f, top_n).await?;
    let points: Vec<Point> = series
        .iter()
        .map(|b| Point {
            label: bucket_label(b.start_ms, bucket_ms),
            value: b.calls as f64,
        })
        .collect();
    let bars: Vec<Point> = top
        .iter()
        .map(|e| Point {
            label: format!("{} {}", e.method, e.endpoint),
            value: e.calls as f64,
        })
        .collect();
    Ok(UsageReport {
        calls_svg: line_chart_svg("API calls over time", "calls", &points),
        endpoints_svg: bar_chart_svg("Most called endpoints", "calls", &bars),
        series,
        summary,
        top,
    })
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Raw calls as CSV (one row per call).
pub fn calls_csv(calls: &[ApiCall]) -> String {
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            vec![
                rfc3339_ms(c.at_ms),
                c.server.clone(),
                c.client_id.clone().unwrap_or_default(),
                c.org_id.clone().unwrap_or_default(),
                c.plan.clone().unwrap_or_default(),
                c.method.clone(),
                c.endpoint.clone(),
                c.status.to_string(),
                c.latency_us.to_string(),
                c.req_bytes.to_string(),
                c.resp_bytes.to_string(),
            ]
        })
        .collect();
    to_csv(
        &[
            "time",
            "server",
            "client_id",
            "org_id",
            "plan",
            "method",
            "endpoint",
            "status",
            "latency_us",
            "request_bytes",
            "response_bytes",
        ],
        &rows,
    )
}

/// Bucketed calls as CSV.
pub fn series_csv(series: &[UsageBucket]) -> String {
    let rows: Vec<Vec<String>> = series
        .iter()
        .map(|b| {
            vec![
                rfc3339_ms(b.start_ms),
                b.calls.to_string(),
                b.errors.to_string(),
            ]
        })
        .collect();
    to_csv(&["bucket_start", "calls", "errors"], &rows)
}

/// `[start, end)` of a UTC calendar month in unix milliseconds.
pub fn month_range_ms(year: i32, month: u8) -> Option<(i64, i64)> {
    let m = time::Month::try_from(month).ok()?;
    let start = time::Date::from_calendar_date(year, m, 1).ok()?;
    let (ny, nm) = if month == 12 {
        (year + 1, time::Month::January)
    } else {
        (year, m.next())
    };
    let end = time::Date::from_calendar_date(ny, nm, 1).ok()?;
    let ms = |d: time::Date| d.midnight().assume_utc().unix_timestamp() * 1000;
    Some((ms(start), ms(end)))
}

/// The org's statement for `year`-`month`: one line per client and plan (the plan in
/// force at each call), priced by that plan; a plan no longer configured is priced 0.
/// `None` for an invalid month.
pub async fn monthly_statement(
    store: &dyn UsageStore,
    plans: &BTreeMap<String, PlanConfig>,
    currency: &str,
    org_id: &str,
    year: i32,
    month: u8,
) -> StoreResult<Option<Statement>> {
    let Some((from_ms, to_ms)) = month_range_ms(year, month) else {
        return Ok(None);
    };
    let f = UsageFilter {
        org_id: Some(org_id.to_owned()),
        client_id: None,
        from_ms,
        to_ms,
    };
    let usage = store.usage_by_client(&f).await?;
    let lines = usage.into_iter().map(|u| {
        let price = plans.get(&u.plan).map_or(0, |p| p.price_per_1000_minor);
        (u.client_id, u.plan, u.calls, u.billable, price)
    });
    Ok(Some(Statement::new(
        org_id,
        &format!("{year:04}-{month:02}"),
        currency,
        lines,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_labels() {
        assert_eq!(
            month_range_ms(2026, 12),
            Some((1_796_083_200_000, 1_798_761_600_000))
        );
        assert_eq!(month_range_ms(2026, 13), None);
        assert_eq!(bucket_label(1_796_083_200_000, 86_400_000), "2026-12-01");
        assert_eq!(
            bucket_label(1_796_083_200_000 + 3_600_000, 60_000),
            "12-01 01:00"
        );
    }
}
