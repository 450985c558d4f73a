//! Ephemeral store over Redis (scaled mode).
//!
//! Each entry is one string `{flag}{expires_at}|{value}`: `flag` is `0` (unused) or `1`
//! (consumed), `expires_at` the caller's unix-second expiry. Keeping the expiry inside the
//! value lets every read re-check it against the caller's `now` (the protocol layer runs on
//! an injectable clock), while the Redis TTL, `expires_at - now`, does the garbage
//! collection. Keeping it a plain string lets `take` be a single `GETDEL`.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Consumed, EphemeralStore, StoreError, StoreResult};

/// KEYS[1]; ARGV: encoded value, ttl in ms, now. Writes only when no live entry exists.
const INSERT_IF_ABSENT: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local exp = tonumber(string.match(cur, '^[01](%-?%d+)|'))
  if exp and exp > tonumber(ARGV[3]) then return 0 end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// KEYS[1]; ARGV: now. Returns {0, ''} missing/expired, {1, entry} fresh (now flagged),
/// {2, entry} replayed, {3, entry} unparseable.
const CONSUME: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, ''} end
local flag, exp = string.match(cur, '^([01])(%-?%d+)|')
if not flag then return {3, cur} end
if tonumber(exp) <= tonumber(ARGV[1]) then return {0, ''} end
if flag == '0' then
  redis.call('SETRANGE', KEYS[1], 0, '1')
  return {1, cur}
end
return {2, cur}
";

fn cache_err(e: redis::RedisError) -> StoreError {
    StoreError::Cache(e.to_string())
}

fn encode(consumed: bool, expires_at: i64, value: &str) -> String {
    format!("{}{expires_at}|{value}", if consumed { '1' } else { '0' })
}

/// Splits an entry into (consumed, expires_at, value).
fn decode(entry: &str) -> StoreResult<(bool, i64, &str)> {
    let bad = || StoreError::Corrupt("malformed ephemeral entry in Redis".into());
    let consumed = match entry.as_bytes().first() {
        Some(b'0') => false,
        Some(b'1') => true,
        _ => return Err(bad()),
    };
    let (exp, value) = entry
        .get(1..)
        .and_then(|r| r.split_once('|'))
        .ok_or_else(bad)?;
    let exp = exp.parse::<i64>().map_err(|_| bad())?;
    Ok((consumed, exp, value))
}

/// Value of a live entry, `None` if absent or expired at `now`.
fn live(entry: Option<String>, now: i64) -> StoreResult<Option<String>> {
    let Some(entry) = entry else { return Ok(None) };
    let (_, exp, value) = decode(&entry)?;
    Ok((exp > now).then(|| value.to_owned()))
}

fn ttl_ms(expires_at: i64, now: i64) -> i64 {
    expires_at.saturating_sub(now).saturating_mul(1000)
}

/// Ephemeral store in Redis; cheap to clone (one multiplexed, auto-reconnecting connection).
#[derive(Clone)]
pub struct RedisEphemeral {
    conn: ConnectionManager,
    prefix: String,
    insert_if_absent: redis::Script,
    consume: redis::Script,
}

impl std::fmt::Debug for RedisEphemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEphemeral")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisEphemeral {
    /// Connect to `url` (`redis://` or `rediss://`); keys are `{key_prefix}:{ns}:{key}`.
    pub async fn connect(url: &str, key_prefix: &str) -> StoreResult<Self> {
        let client = redis::Client::open(url).map_err(cache_err)?;
        // Bounded timeouts and retries so an unreachable Redis fails the call (and readiness)
        // instead of hanging requests.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(cache_err)?;
        Ok(Self {
            conn,
            prefix: key_prefix.to_owned(),
            insert_if_absent: redis::Script::new(INSERT_IF_ABSENT),
            consume: redis::Script::new(CONSUME),
        })
    }

    fn key(&self, ns: &str, key: &str) -> String {
        format!("{}:{ns}:{key}", self.prefix)
    }
}

#[async_trait]
impl EphemeralStore for RedisEphemeral {
    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let k = self.key(ns, key);
        let ttl = ttl_ms(expires_at, now);
        if ttl > 0 {
            let _: redis::Value = redis::cmd("SET")
                .arg(&k)
                .arg(encode(false, expires_at, value))
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn)
                .await
                .map_err(cache_err)?;
        } else {
            // An already-expired value replaces the old one by removing it.
            let _: i64 = redis::cmd("DEL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .map_err(cache_err)?;
        }
        Ok(())
    }

    async fn get(&self, ns: &str, key: &str, now: i64) -> StoreResult<Option<String>> {
        let mut conn = self.conn.clone();
        let entry: Option<String> = redis::cmd("GET")
            .arg(self.key(ns, key))
            .query_async(&mut conn)
            .await
            .map_err(cache_err)?;
        live(entry, now)
    }

    async fn take(&self, ns: &str, key: &str, now: i64) -> StoreResult<Option<String>> {
        let mut conn = self.conn.clone();
        let entry: Option<String> = redis::cmd("GETDEL")
            .arg(self.key(ns, key))
            .query_async(&mut conn)
            .await
            .map_err(cache_err)?;
        live(entry, now)
    }

    async fn delete(&self, ns: &str, key: &str) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(ns, key))
            .query_async(&mut conn)
            .await
            .map_err(cache_err)?;
        Ok(())
    }

    async fn insert_if_absent(
        &self,
        ns: &str,
        key: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<bool> {
        // Not a bare SET NX: an entry that is expired by the caller's clock but still within
        // its Redis TTL must be replaceable, so the check runs server-side in Lua.
        let mut conn = self.conn.clone();
        let inserted: i64 = self
            .insert_if_absent
            .key(self.key(ns, key))
            .arg(encode(false, expires_at, value))
            .arg(ttl_ms(expires_at, now))
            .arg(now)
            .invoke_async(&mut conn)
            .await
            .map_err(cache_err)?;
        Ok(inserted == 1)
    }

    async fn consume(&self, ns: &str, key: &str, now: i64) -> StoreResult<Consumed> {
        let mut conn = self.conn.clone();
        let (code, entry): (i64, String) = self
            .consume
            .key(self.key(ns, key))
            .arg(now)
            .invoke_async(&mut conn)
            .await
            .map_err(cache_err)?;
        match code {
            0 => Ok(Consumed::Missing),
            1 | 2 => {
                let (_, _, value) = decode(&entry)?;
                Ok(if code == 1 {
                    Consumed::Fresh(value.to_owned())
                } else {
                    Consumed::Replayed(value.to_owned())
                })
            }
            _ => Err(StoreError::Corrupt(
                "malformed ephemeral entry in Redis".into(),
            )),
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(cache_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_roundtrip_keeps_separators_in_value() {
        let e = encode(false, 1_700_000_000, "a|b|c");
        assert_eq!(decode(&e).ok(), Some((false, 1_700_000_000, "a|b|c")));
        let e = encode(true, -5, "");
        assert_eq!(decode(&e).ok(), Some((true, -5, "")));
        assert!(decode("x12|v").is_err());
        assert!(decode("0abc|v").is_err());
        assert!(decode("").is_err());
    }
}
