//! Latency histograms, CPU accounting from /proc, and small parsing helpers.

use anyhow::Context;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// Latencies in microseconds, 1 µs .. 2 min, 3 significant digits.
pub struct Latency(Histogram<u64>);

impl Latency {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self(Histogram::new_with_bounds(1, 120_000_000, 3)?))
    }

    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 120_000_000);
        // Cannot fail within the bounds above.
        let _ = self.0.record(us);
    }

    pub fn add(&mut self, other: &Latency) -> anyhow::Result<()> {
        self.0.add(&other.0)?;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Quantile in milliseconds (0 when empty).
    pub fn ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            0.0
        } else {
            self.0.value_at_quantile(q) as f64 / 1000.0
        }
    }

    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }
}

/// `20s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (use e.g. 20s, 500ms, 2m)"))?;
    if v.is_nan() || v <= 0.0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime (clock ticks) of a process, all threads included.
fn proc_ticks(pid: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which may contain spaces: state is field 3.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| -> anyhow::Result<u64> {
        Ok(f.get(i).context("short /proc stat")?.parse::<u64>()?)
    };
    Ok(get(11)? + get(12)?)
}

/// Busy ticks of the whole machine (user, nice, system, irq, softirq, steal).
fn machine_busy() -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/stat")?;
    let line = s.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    Ok([0usize, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| v.get(i).copied().unwrap_or(0))
        .sum())
}

pub struct CpuSnap {
    at: Instant,
    busy: u64,
    me: u64,
    server: Option<u64>,
}

/// Cores used over an interval: whole machine, server under test, this tool, the rest.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub total: f64,
    pub server: Option<f64>,
    pub tool: f64,
    pub other: f64,
}

impl CpuSnap {
    /// `server_pids`: the server under test (several: summed, e.g. server + its Redis).
    pub fn take(server_pids: &[u32]) -> anyhow::Result<Self> {
        let server = if server_pids.is_empty() {
            None
        } else {
            let mut sum = 0;
            for p in server_pids {
                sum += proc_ticks(&p.to_string())?;
            }
            Some(sum)
        };
        Ok(Self {
            at: Instant::now(),
            busy: machine_busy()?,
            me: proc_ticks("self")?,
            server,
        })
    }

    pub fn since(&self, server_pids: &[u32]) -> anyhow::Result<CpuUse> {
        let now = Self::take(server_pids)?;
        let secs = now.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let hz = clk_tck();
        let cores = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz / secs;
        let total = cores(self.busy, now.busy);
        let tool = cores(self.me, now.me);
        let server = match (self.server, now.server) {
            (Some(a), Some(b)) => Some(cores(a, b)),
            _ => None,
        };
        Ok(CpuUse {
            total,
            server,
            tool,
            other: (total - tool - server.unwrap_or(0.0)).max(0.0),
        })
    }
}

impl CpuUse {
    pub fn line(&self) -> String {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        format!(
            "cpu (cores, of {n}): total {:.2}  server {}  load tool {:.2}  other {:.2}",
            self.total,
            self.server
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "n/a".into()),
            self.tool,
            self.other
        )
    }

    pub fn kv(&self) -> String {
        format!(
            "cpu_total={:.2} cpu_server={} cpu_tool={:.2} cpu_other={:.2}",
            self.total,
            self.server
                .map(|s| format!("{s:.2}"))
                .unwrap_or_else(|| "na".into()),
            self.tool,
            self.other
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn histogram_quantiles() -> anyhow::Result<()> {
        let mut h = Latency::new()?;
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 100);
        assert!((h.ms(0.5) - 50.0).abs() < 0.1);
        assert!((h.ms(0.99) - 99.0).abs() < 0.1);
        Ok(())
    }

    #[test]
    fn own_cpu_is_readable() -> anyhow::Result<()> {
        let me = [std::process::id()];
        let s = CpuSnap::take(&me)?;
        let u = s.since(&me)?;
        assert!(u.total >= 0.0 && u.tool >= 0.0);
        Ok(())
    }
}
