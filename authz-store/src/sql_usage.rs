//! Plans and metering storage (issue 9, migration `0009_gateway`): which plan and org a
//! client belongs to, the metered API calls (written in batches by the gateway's
//! background writer), their retention, and the aggregation queries the usage pages and
//! the monthly statement are built from.
//!
//! Every query runs on both backends through `Any`: integer division for time buckets,
//! `CAST(SUM(..) AS BIGINT)` (PostgreSQL's `SUM(bigint)` is `numeric`), and percentiles
//! by nearest rank with `ORDER BY .. LIMIT 1 OFFSET k` (SQLite has no `percentile_disc`),
//! so only the rows' count and three latencies leave the database.

use crate::sql::{col, db_err};
use crate::{SqlStore, StoreResult};
use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AssertSqlSafe};

/// The plan a client is on and the organisation whose limits it shares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientPlan {
    pub client_id: String,
    pub org_id: String,
    pub plan: String,
}

/// The plan of a client with no `client_plans` row.
pub const DEFAULT_PLAN: &str = "sandbox";

impl ClientPlan {
    /// A client with no row: the sandbox plan, alone in an org named after itself.
    pub fn default_for(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            org_id: client_id.to_owned(),
            plan: DEFAULT_PLAN.to_owned(),
        }
    }
}

/// One metered API call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiCall {
    /// Unix milliseconds when the request arrived.
    pub at_ms: i64,
    /// `as` (authorization server back channel) or `rs` (resource server).
    pub server: String,
    pub client_id: Option<String>,
    pub org_id: Option<String>,
    pub plan: Option<String>,
    pub method: String,
    /// Route template, e.g. `/open-banking/v4.0/aisp/accounts/{AccountId}`.
    pub endpoint: String,
    pub status: i64,
    pub latency_us: i64,
    pub req_bytes: i64,
    pub resp_bytes: i64,
}

impl ApiCall {
    /// A call counts as an error when it was answered 4xx or 5xx.
    pub fn is_error(&self) -> bool {
        self.status >= 400
    }
}

/// Which calls: an org or a single client (app), over `[from_ms, to_ms)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub org_id: Option<String>,
    pub client_id: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Calls in one time bucket starting at `start_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageBucket {
    pub start_ms: i64,
    pub calls: i64,
    pub errors: i64,
}

/// Totals and latency percentiles (nearest rank, microseconds; 0 with no calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageSummary {
    pub calls: i64,
    pub errors: i64,
    pub p50_us: i64,
    pub p95_us: i64,
    pub p99_us: i64,
}

impl UsageSummary {
    /// Errors over calls, 0.0 with no calls.
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.errors as f64 / self.calls as f64
        }
    }
}

/// Calls to one endpoint (route template and method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUsage {
    pub server: String,
    pub method: String,
    pub endpoint: String,
    pub calls: i64,
    pub errors: i64,
    pub avg_latency_us: i64,
}

/// Calls of one client under one plan (the basis of a statement line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientUsage {
    pub client_id: String,
    pub plan: String,
    pub calls: i64,
    /// Calls answered below 400: what is billed.
    pub billable: i64,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Put a client on a plan in an org (replacing what it had). The developer portal
    /// calls this when it creates an app.
    async fn set_client_plan(
        &self,
        client_id: &str,
        org_id: &str,
        plan: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// The client's row, `None` when it has none (then [`ClientPlan::default_for`]).
    async fn find_client_plan(&self, client_id: &str) -> StoreResult<Option<ClientPlan>>;
    /// The clients with a row in `org_id`, by client id.
    async fn list_org_clients(&self, org_id: &str) -> StoreResult<Vec<ClientPlan>>;
    /// Insert metered calls (multi-row inserts, in one transaction).
    async fn insert_api_calls(&self, calls: &[ApiCall]) -> StoreResult<()>;
    /// Retention: delete calls before `before_ms`; returns how many.
    async fn delete_api_calls_before(&self, before_ms: i64) -> StoreResult<u64>;
    /// Raw calls, oldest first, at most `limit`.
    async fn list_api_calls(&self, f: &UsageFilter, limit: i64) -> StoreResult<Vec<ApiCall>>;
    /// Calls per bucket of `bucket_ms`, from `f.from_ms`, every bucket present (zeros
    /// included) up to `f.to_ms`.
    async fn usage_series(&self, f: &UsageFilter, bucket_ms: i64) -> StoreResult<Vec<UsageBucket>>;
    async fn usage_summary(&self, f: &UsageFilter) -> StoreResult<UsageSummary>;
    /// The most called endpoints, most calls first.
    async fn top_endpoints(&self, f: &UsageFilter, limit: i64) -> StoreResult<Vec<EndpointUsage>>;
    /// Calls per client and plan (identified calls only), by client id.
    async fn usage_by_client(&self, f: &UsageFilter) -> StoreResult<Vec<ClientUsage>>;
}

enum Arg {
    I(i64),
    S(String),
}

/// `WHERE ..` of a filter, with its arguments from `$first` on.
fn where_clause(f: &UsageFilter, args: &mut Vec<Arg>) -> String {
    let mut w = String::from("at_ms >= $1 AND at_ms < $2");
    args.push(Arg::I(f.from_ms));
    args.push(Arg::I(f.to_ms));
    if let Some(o) = &f.org_id {
        args.push(Arg::S(o.clone()));
        w.push_str(&format!(" AND org_id = ${}", args.len()));
    }
    if let Some(c) = &f.client_id {
        args.push(Arg::S(c.clone()));
        w.push_str(&format!(" AND client_id = ${}", args.len()));
    }
    w
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, AnyArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Any, AnyArguments> {
    for a in args {
        q = match a {
            Arg::I(i) => q.bind(i),
            Arg::S(s) => q.bind(s),
        };
    }
    q
}

fn call_from_row(r: &AnyRow) -> StoreResult<ApiCall> {
    Ok(ApiCall {
        at_ms: col(r, "at_ms")?,
        server: col(r, "server")?,
        client_id: col(r, "client_id")?,
        org_id: col(r, "org_id")?,
        plan: col(r, "plan")?,
        method: col(r, "method")?,
        endpoint: col(r, "endpoint")?,
        status: col(r, "status")?,
        latency_us: col(r, "latency_us")?,
        req_bytes: col(r, "req_bytes")?,
        resp_bytes: col(r, "resp_bytes")?,
    })
}

/// Rows per multi-row insert (11 parameters each; well under both backends' limits).
const INSERT_CHUNK: usize = 400;

#[async_trait]
impl UsageStore for SqlStore {
    async fn set_client_plan(
        &self,
        client_id: &str,
        org_id: &str,
        plan: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query::<Any>(
            "INSERT INTO client_plans (client_id, org_id, plan, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (client_id) DO UPDATE SET org_id = excluded.org_id, plan = excluded.plan, \
             updated_at = excluded.updated_at",
        )
        .bind(client_id.to_owned())
        .bind(org_id.to_owned())
        .bind(plan.to_owned())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_client_plan(&self, client_id: &str) -> StoreResult<Option<ClientPlan>> {
        let row = sqlx::query::<Any>(
            "SELECT client_id, org_id, plan FROM client_plans WHERE client_id = $1",
        )
        .bind(client_id.to_owned())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| {
            Ok(ClientPlan {
                client_id: col(&r, "client_id")?,
                org_id: col(&r, "org_id")?,
                plan: col(&r, "plan")?,
            })
        })
        .transpose()
    }

    async fn list_org_clients(&self, org_id: &str) -> StoreResult<Vec<ClientPlan>> {
        let rows = sqlx::query::<Any>(
            "SELECT client_id, org_id, plan FROM client_plans WHERE org_id = $1 ORDER BY client_id",
        )
        .bind(org_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(ClientPlan {
                    client_id: col(r, "client_id")?,
                    org_id: col(r, "org_id")?,
                    plan: col(r, "plan")?,
                })
            })
            .collect()
    }

    async fn insert_api_calls(&self, calls: &[ApiCall]) -> StoreResult<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for chunk in calls.chunks(INSERT_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO api_calls (at_ms, server, client_id, org_id, plan, method, endpoint, \
                 status, latency_us, req_bytes, resp_bytes) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 11;
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for k in 1..=11 {
                    if k > 1 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", b + k));
                }
                sql.push(')');
            }
            let mut q = sqlx::query::<Any>(AssertSqlSafe(sql));
            for c in chunk {
                q = q
                    .bind(c.at_ms)
                    .bind(c.server.clone())
                    .bind(c.client_id.clone())
                    .bind(c.org_id.clone())
                    .bind(c.plan.clone())
                    .bind(c.method.clone())
                    .bind(c.endpoint.clone())
                    .bind(c.status)
                    .bind(c.latency_us)
                    .bind(c.req_bytes)
                    .bind(c.resp_bytes);
            }
            q.execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn delete_api_calls_before(&self, before_ms: i64) -> StoreResult<u64> {
        let r = sqlx::query::<Any>("DELETE FROM api_calls WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected())
    }

    async fn list_api_calls(&self, f: &UsageFilter, limit: i64) -> StoreResult<Vec<ApiCall>> {
        let mut args = Vec::new();
        let w = where_clause(f, &mut args);
        args.push(Arg::I(limit.max(0)));
        let sql = format!(
            "SELECT at_ms, server, client_id, org_id, plan, method, endpoint, status, latency_us, \
             req_bytes, resp_bytes FROM api_calls WHERE {w} ORDER BY at_ms, endpoint LIMIT ${}",
            args.len()
        );
        let rows = bind_all(sqlx::query::<Any>(AssertSqlSafe(sql)), args)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(call_from_row).collect()
    }

    async fn usage_series(&self, f: &UsageFilter, bucket_ms: i64) -> StoreResult<Vec<UsageBucket>> {
        let bucket_ms = bucket_ms.max(1);
        let mut args = Vec::new();
        let w = where_clause(f, &mut args);
        args.push(Arg::I(bucket_ms));
        let sql = format!(
            "SELECT (at_ms - $1) / ${} AS b, COUNT(*) AS calls, \
             CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT) AS errors \
             FROM api_calls WHERE {w} GROUP BY (at_ms - $1) / ${0} ORDER BY b",
            args.len()
        );
        let rows = bind_all(sqlx::query::<Any>(AssertSqlSafe(sql)), args)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let n = ((f.to_ms - f.from_ms).max(0) + bucket_ms - 1) / bucket_ms;
        let mut out: Vec<UsageBucket> = (0..n)
            .map(|i| UsageBucket {
                start_ms: f.from_ms + i * bucket_ms,
                calls: 0,
                errors: 0,
            })
            .collect();
        for r in &rows {
            let b: i64 = col(r, "b")?;
            if let Some(slot) = usize::try_from(b).ok().and_then(|i| out.get_mut(i)) {
                slot.calls = col(r, "calls")?;
                slot.errors = col(r, "errors")?;
            }
        }
        Ok(out)
    }

    async fn usage_summary(&self, f: &UsageFilter) -> StoreResult<UsageSummary> {
        let mut args = Vec::new();
        let w = where_clause(f, &mut args);
        let sql = format!(
            "SELECT COUNT(*) AS calls, \
             CAST(COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors \
             FROM api_calls WHERE {w}"
        );
        let row = bind_all(sqlx::query::<Any>(AssertSqlSafe(sql)), args)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        let mut s = UsageSummary {
            calls: col(&row, "calls")?,
            errors: col(&row, "errors")?,
            ..UsageSummary::default()
        };
        if s.calls == 0 {
            return Ok(s);
        }
        let n = s.calls;
        let pick = async |p: i64| -> StoreResult<i64> {
            // Nearest rank: the ceil(p/100 * n)-th smallest latency.
            let rank = (p * n + 99) / 100;
            let mut args = Vec::new();
            let w = where_clause(f, &mut args);
            args.push(Arg::I((rank - 1).max(0)));
            let sql = format!(
                "SELECT latency_us FROM api_calls WHERE {w} ORDER BY latency_us LIMIT 1 OFFSET ${}",
                args.len()
            );
            let row = bind_all(sqlx::query::<Any>(AssertSqlSafe(sql)), args)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
            row.map(|r| col(&r, "latency_us"))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        s.p50_us = pick(50).await?;
        s.p95_us = pick(95).await?;
        s.p99_us = pick(99).await?;
        Ok(s)
    }

    async fn top_endpoints(&self, f: &UsageFilter, limit: i64) -> StoreResult<Vec<EndpointUsage>> {
        let mut args = Vec::new();
        let w = where_clause(f, &mut args);
        args.push(Arg::I(limit.max(0)));
        let sql = format!(
            "SELECT server, method, endpoint, COUNT(*) AS calls, \
             CAST(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS BIGINT) AS errors, \
             CAST(SUM(latency_us) / COUNT(*) AS BIGINT) AS avg_us \
             FROM api_calls WHERE {w} GROUP BY server, method, endpoint \
             ORDER BY calls DESC, endpoint, method LIMIT ${}",
            args.len()
        );
        let rows = bind_all(sqlx::query::<Any>(AssertSqlSafe(sql)), args)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(EndpointUsage {
                    server: col(r, "server")?,
                    method: col(r, "method")?,
                    endpoint: col(r, "endpoint")?,
                    calls: col(r, "calls")?,
                    errors: col(r, "errors")?,
                    avg_latency_us: col(r, "avg_us")?,
                })
            })
            .collect()
    }

    async fn usage_by_client(&self, f: &UsageFilter) -> StoreResult<Vec<ClientUsage>> {
        let mut args = Vec::new();
        let w = where_clause(f, &mut args);
        let sql = format!(
            "SELECT client_id, COALESCE(plan, '{DEFAULT_PLAN}') AS plan, COUNT(*) AS calls, \
             CAST(SUM(CASE WHEN status < 400 THEN 1 ELSE 0 END) AS BIGINT) AS billable \
             FROM api_calls WHERE {w} AND client_id IS NOT NULL \
             GROUP BY client_id, COALESCE(plan, '{DEFAULT_PLAN}') ORDER BY client_id, plan"
        );
        let rows = bind_all(sqlx::query::<Any>(AssertSqlSafe(sql)), args)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(ClientUsage {
                    client_id: col(r, "client_id")?,
                    plan: col(r, "plan")?,
                    calls: col(r, "calls")?,
                    billable: col(r, "billable")?,
                })
            })
            .collect()
    }
}
