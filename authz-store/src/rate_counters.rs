//! Rate-limit and quota counters of the gateway (issue 9, ADR 0015): one atomic decision
//! over three scopes — the client's rate, its org's rate and the org's daily quota — so a
//! request refused by one scope spends nothing from the others.
//!
//! Rates are GCRA (the generic cell rate algorithm: a token bucket kept as one
//! "theoretical arrival time" per key, so a key is one integer, not a count and a
//! timestamp). The daily quota is a fixed window: one counter per org and UTC day.
//! [`MemoryCounters`] keeps them in process (embedded mode, one instance);
//! [`RedisCounters`] keeps them in Redis with one Lua script per decision, timed by the
//! Redis server's clock so every instance shares one counter and one time line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{StoreError, StoreResult};

/// A sustained rate with a burst. `per_second <= 0` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate {
        per_second: 0.0,
        burst: 0,
    };

    fn limited(&self) -> bool {
        self.per_second > 0.0 && self.burst > 0
    }

    /// Microseconds between two requests at the sustained rate (GCRA's T).
    fn emission_us(&self) -> i64 {
        // Finite and positive when limited; clamped so a tiny rate cannot overflow.
        #[allow(clippy::cast_possible_truncation)]
        let t = (1_000_000.0 / self.per_second).clamp(1.0, 1e13) as i64;
        t
    }

    /// GCRA's tolerance: `burst` requests at once.
    fn tau_us(&self) -> i64 {
        self.emission_us().saturating_mul(i64::from(self.burst))
    }
}

/// Where the three counters live. The caller builds them (org and day in the names).
#[derive(Debug, Clone, Copy)]
pub struct AdmitKeys<'a> {
    pub client: &'a str,
    pub org: &'a str,
    pub quota: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct AdmitLimits {
    pub client: Rate,
    pub org: Rate,
    /// Calls per org and day; 0 = unlimited.
    pub daily_quota: u64,
    /// Milliseconds until the quota window ends (the end of the UTC day).
    pub quota_reset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Client,
    Org,
    Quota,
}

/// One scope after the decision. `limit` 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScopeState {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until the scope is back to its full `limit`.
    pub reset_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The first scope that refused, and the milliseconds until it would admit.
    pub refused: Option<(Scope, i64)>,
    pub client: ScopeState,
    pub org: ScopeState,
    pub quota: ScopeState,
}

#[async_trait]
pub trait RateCounters: Send + Sync {
    /// Admit one request if every scope allows it, spending from all three; otherwise
    /// spend nothing.
    async fn admit(&self, keys: AdmitKeys<'_>, limits: &AdmitLimits) -> StoreResult<Decision>;
}

/// GCRA step: `(allowed, new_tat or retry, state)` at `now` with stored `tat`.
fn gcra(tat: Option<i64>, now: i64, rate: Rate) -> (bool, i64, ScopeState) {
    if !rate.limited() {
        return (true, 0, ScopeState::default());
    }
    let t = rate.emission_us();
    let tau = rate.tau_us();
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + t;
    let diff = new_tat - now;
    let limit = u64::from(rate.burst);
    if diff > tau {
        let state = ScopeState {
            limit,
            remaining: 0,
            reset_ms: ceil_ms(tat - now),
        };
        (false, ceil_ms(diff - tau), state)
    } else {
        let remaining = u64::try_from((tau - diff) / t).unwrap_or(0);
        let state = ScopeState {
            limit,
            remaining,
            reset_ms: ceil_ms(diff),
        };
        (true, new_tat, state)
    }
}

fn ceil_ms(us: i64) -> i64 {
    (us.max(0) + 999) / 1000
}

/// In-process counters (embedded mode). Bounded: expired entries are swept when the
/// table grows past its bound.
pub struct MemoryCounters {
    epoch: Instant,
    map: Mutex<HashMap<String, (i64, i64)>>,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            map: Mutex::new(HashMap::new()),
        }
    }
}

const MEMORY_SWEEP_AT: usize = 50_000;

impl MemoryCounters {
    fn now_us(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// The decision at `now_us` (microseconds on this instance's monotonic clock).
    pub fn admit_at(&self, keys: AdmitKeys<'_>, l: &AdmitLimits, now: i64) -> Decision {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MEMORY_SWEEP_AT {
            map.retain(|_, (_, exp)| *exp > now);
        }
        let live = |map: &HashMap<String, (i64, i64)>, k: &str| {
            map.get(k).filter(|(_, exp)| *exp > now).map(|(v, _)| *v)
        };
        let (c_ok, c_val, client) = gcra(live(&map, keys.client), now, l.client);
        let (o_ok, o_val, org) = gcra(live(&map, keys.org), now, l.org);
        let used = live(&map, keys.quota).unwrap_or(0);
        let q_ok = l.daily_quota == 0 || u64::try_from(used).unwrap_or(0) < l.daily_quota;
        let refused = if !c_ok {
            Some((Scope::Client, c_val))
        } else if !o_ok {
            Some((Scope::Org, o_val))
        } else if !q_ok {
            Some((Scope::Quota, l.quota_reset_ms))
        } else {
            None
        };
        let mut quota = ScopeState::default();
        if l.daily_quota > 0 {
            let spent = u64::try_from(used).unwrap_or(0) + u64::from(refused.is_none());
            quota = ScopeState {
                limit: l.daily_quota,
                remaining: l.daily_quota.saturating_sub(spent),
                reset_ms: l.quota_reset_ms,
            };
        }
        if refused.is_none() {
            if l.client.limited() {
                map.insert(keys.client.to_owned(), (c_val, c_val));
            }
            if l.org.limited() {
                map.insert(keys.org.to_owned(), (o_val, o_val));
            }
            if l.daily_quota > 0 {
                let exp = now + (l.quota_reset_ms + 3_600_000) * 1000;
                map.insert(keys.quota.to_owned(), (used + 1, exp));
            }
        }
        Decision {
            refused,
            client,
            org,
            quota,
        }
    }
}

#[async_trait]
impl RateCounters for MemoryCounters {
    async fn admit(&self, keys: AdmitKeys<'_>, limits: &AdmitLimits) -> StoreResult<Decision> {
        Ok(self.admit_at(keys, limits, self.now_us()))
    }
}

/// KEYS: client, org, quota. ARGV: client T, client tau, org T, org tau (µs; tau 0 =
/// unlimited), quota (0 = unlimited), quota reset ms. Returns {refused scope (0 none, 1
/// client, 2 org, 3 quota), retry ms, then limit/remaining/reset ms per scope}.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function ceilms(us) if us < 0 then us = 0 end return math.floor((us + 999) / 1000) end
local function gcra(key, T, tau)
  if tau <= 0 then return {1, 0, 0, 0, 0} end
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + T
  local diff = new_tat - now
  local limit = math.floor(tau / T + 0.5)
  if diff > tau then return {0, ceilms(diff - tau), limit, 0, ceilms(tat - now)} end
  return {1, new_tat, limit, math.floor((tau - diff) / T), ceilms(diff)}
end
local c = gcra(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local o = gcra(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
local quota = tonumber(ARGV[5])
local reset = tonumber(ARGV[6])
local used = tonumber(redis.call('GET', KEYS[3]) or 0)
local refused, retry = 0, 0
if c[1] == 0 then refused, retry = 1, c[2]
elseif o[1] == 0 then refused, retry = 2, o[2]
elseif quota > 0 and used >= quota then refused, retry = 3, reset end
local q_rem = 0
if quota > 0 then
  local spent = used
  if refused == 0 then spent = used + 1 end
  q_rem = quota - spent
  if q_rem < 0 then q_rem = 0 end
end
if refused == 0 then
  if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], string.format('%.0f', c[2]), 'PX', c[5] + 1) end
  if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[2], string.format('%.0f', o[2]), 'PX', o[5] + 1) end
  if quota > 0 then
    redis.call('INCR', KEYS[3])
    redis.call('PEXPIRE', KEYS[3], reset + 3600000)
  end
end
return {refused, retry, c[3], c[4], c[5], o[3], o[4], o[5], quota, q_rem, reset}
";

/// Counters in Redis (scaled mode): every instance shares them.
#[derive(Clone)]
pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
}

impl RedisCounters {
    /// Keys are `{key_prefix}:gw:{name}`.
    pub async fn connect(url: &str, key_prefix: &str) -> StoreResult<Self> {
        let err = |e: redis::RedisError| StoreError::Cache(e.to_string());
        let client = redis::Client::open(url).map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(err)?;
        Ok(Self {
            conn,
            prefix: key_prefix.to_owned(),
            script: redis::Script::new(ADMIT),
        })
    }
}

#[async_trait]
impl RateCounters for RedisCounters {
    async fn admit(&self, keys: AdmitKeys<'_>, l: &AdmitLimits) -> StoreResult<Decision> {
        let tau = |r: Rate| if r.limited() { r.tau_us() } else { 0 };
        let t = |r: Rate| if r.limited() { r.emission_us() } else { 1 };
        let mut conn = self.conn.clone();
        let v: Vec<i64> = self
            .script
            .key(format!("{}:gw:{}", self.prefix, keys.client))
            .key(format!("{}:gw:{}", self.prefix, keys.org))
            .key(format!("{}:gw:{}", self.prefix, keys.quota))
            .arg(t(l.client))
            .arg(tau(l.client))
            .arg(t(l.org))
            .arg(tau(l.org))
            .arg(l.daily_quota)
            .arg(l.quota_reset_ms.max(0))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| StoreError::Cache(e.to_string()))?;
        let [refused, retry, cl, cr, cs, ol, or, os, ql, qr, qs] = v[..] else {
            return Err(StoreError::Corrupt(
                "unexpected reply from the rate-limit script".into(),
            ));
        };
        let st = |l: i64, r: i64, s: i64| ScopeState {
            limit: u64::try_from(l).unwrap_or(0),
            remaining: u64::try_from(r).unwrap_or(0),
            reset_ms: s,
        };
        let (client, org) = (st(cl, cr, cs), st(ol, or, os));
        let quota = if ql > 0 {
            st(ql, qr, qs)
        } else {
            ScopeState::default()
        };
        let refused = match refused {
            1 => Some((Scope::Client, retry)),
            2 => Some((Scope::Org, retry)),
            3 => Some((Scope::Quota, retry)),
            _ => None,
        };
        Ok(Decision {
            refused,
            client,
            org,
            quota,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(c: f64, cb: u32, o: f64, ob: u32, q: u64) -> AdmitLimits {
        AdmitLimits {
            client: Rate {
                per_second: c,
                burst: cb,
            },
            org: Rate {
                per_second: o,
                burst: ob,
            },
            daily_quota: q,
            quota_reset_ms: 5_000,
        }
    }

    const K: AdmitKeys<'static> = AdmitKeys {
        client: "c",
        org: "o",
        quota: "q",
    };

    #[test]
    fn burst_then_refill_at_the_rate() {
        let m = MemoryCounters::default();
        let l = limits(2.0, 3, 0.0, 0, 0);
        for left in [2, 1, 0] {
            let d = m.admit_at(K, &l, 0);
            assert_eq!(d.refused, None);
            assert_eq!(d.client.remaining, left);
            assert_eq!(d.client.limit, 3);
        }
        let d = m.admit_at(K, &l, 0);
        assert_eq!(d.refused, Some((Scope::Client, 500)));
        // Half a second later exactly one more at 2/s.
        assert_eq!(m.admit_at(K, &l, 500_000).refused, None);
        assert!(m.admit_at(K, &l, 500_000).refused.is_some());
    }

    #[test]
    fn a_refusal_spends_nothing_and_org_and_quota_are_shared() {
        let m = MemoryCounters::default();
        let l = limits(100.0, 100, 100.0, 2, 3);
        let other = AdmitKeys { client: "c2", ..K };
        assert_eq!(m.admit_at(K, &l, 0).refused, None);
        assert_eq!(m.admit_at(other, &l, 0).refused, None);
        // The org's burst of 2 is spent by two clients together.
        let d = m.admit_at(K, &l, 0);
        assert_eq!(d.refused.map(|r| r.0), Some(Scope::Org));
        // Later the org admits again; the quota (3 a day) then refuses the fourth.
        let d = m.admit_at(K, &l, 10_000_000);
        assert_eq!(d.refused, None);
        assert_eq!(d.quota.remaining, 0);
        let d = m.admit_at(other, &l, 20_000_000);
        assert_eq!(d.refused, Some((Scope::Quota, 5_000)));
        // A new day is a new key.
        let next = AdmitKeys { quota: "q2", ..K };
        assert_eq!(m.admit_at(next, &l, 30_000_000).refused, None);
    }
}
