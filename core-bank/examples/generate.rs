//! Times the generator: `cargo run --release -p core-bank --example generate -- 1000000`.

use core_bank::{GeneratorConfig, generate};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let today = time::macros::date!(2026 - 11 - 20);
    let cfg = GeneratorConfig::with_transactions(today, target);
    let t0 = Instant::now();
    let bank = generate(&cfg)?;
    let generated = t0.elapsed();
    let t1 = Instant::now();
    bank.verify()?;
    let verify = t1.elapsed();
    println!(
        "customers {} accounts {} postings {} transactions {} generate {:.2?} verify {:.2?} digest {}",
        bank.customers().len(),
        bank.account_count(),
        bank.ledger().postings().len(),
        bank.transaction_count(),
        generated,
        verify,
        &bank.digest()[..16]
    );
    Ok(())
}
