//! The deterministic sandbox generator. One seed gives the same bank, byte for byte (see
//! [`crate::Bank::digest`]): ChaCha8 seeded from the configuration, one independent stream
//! per customer, so adding customers never changes the earlier ones.
//!
//! A customer's year is built as a list of candidate events (salary, rent by standing
//! order, M-Pesa-style transfers, supermarket, fuel and restaurant card spends, utilities,
//! airtime, card repayments, savings sweeps, interest, fees, foreign income and FX
//! conversions), sorted by booking time and applied one by one; amounts that depend on
//! the state of the accounts (card repayment, interest, conversions) are computed when
//! applied, and spends the account cannot cover are declined (not posted), so balances
//! stay within their credit lines.

use crate::CoreError;
mod reference;

use crate::bank::{Bank, EAT, InternalAccount};
use crate::ledger::LedgerAccountId;
use crate::model::*;
use crate::money::Currency;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reference::{FIRST, KES, Persona, RefData, TOWNS, msisdn, personas, random_persona};
use time::{Date, Duration, Month, Weekday};

/// The seed of the sandbox every developer sees.
pub const SANDBOX_SEED: u64 = 0x5745_4B45_5A41; // "WEKEZA"

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// History runs from `today - history_days` up to the end of the day before `today`.
    pub today: Date,
    pub history_days: u16,
    /// Generated customers beyond the named personas (alice, bob, carol, david).
    pub extra_customers: usize,
    /// Keep adding generated customers until the bank holds at least this many
    /// customer-visible transactions (0: no minimum).
    pub min_transactions: usize,
}

impl GeneratorConfig {
    /// The standard sandbox: the four personas, one year.
    pub fn sandbox(today: Date) -> Self {
        Self {
            seed: SANDBOX_SEED,
            today,
            history_days: 365,
            extra_customers: 0,
            min_transactions: 0,
        }
    }

    /// A benchmark bank with at least `transactions` transactions.
    pub fn with_transactions(today: Date, transactions: usize) -> Self {
        Self {
            min_transactions: transactions,
            ..Self::sandbox(today)
        }
    }
}

/// Generates a bank. Every account passes [`Bank::verify`].
pub fn generate(cfg: &GeneratorConfig) -> Result<Bank, CoreError> {
    let mut bank = Bank::new();
    let mut master = ChaCha8Rng::seed_from_u64(cfg.seed);
    master.set_stream(u64::MAX);
    let refs = RefData::new(&mut bank, &mut master);
    let personas = personas();
    let total = personas.len() + cfg.extra_customers;
    let mut i = 0usize;
    while i < total || bank.transaction_count() < cfg.min_transactions {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(i as u64);
        let p = match personas.get(i) {
            Some(p) => p.clone(),
            None => random_persona(i, &mut rng, &refs),
        };
        CustomerSim::create(&mut bank, &refs, cfg, i, p, &mut rng)?
            .run(&mut bank, &refs, cfg, &mut rng)?;
        i += 1;
    }
    Ok(bank)
}

// ---- one customer's year ------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Acct {
    ledger: LedgerAccountId,
    limit: i64,
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Opening {
        acct: Acct,
        amount: i64,
    },
    Salary {
        amount: i64,
    },
    Rent,
    CardRepayment,
    SavingsSweep,
    Interest,
    MonthlyFee,
    Bill {
        cp: u32,
        amount: i64,
    },
    Airtime {
        amount: i64,
    },
    MpesaOut {
        cp: u32,
        amount: i64,
    },
    MpesaIn {
        cp: u32,
        amount: i64,
    },
    CardSpend {
        kind: TxKind,
        merchant: u32,
        amount: i64,
        value: i64,
    },
    ForeignIncome {
        amount: i64,
    },
    FxConvert,
}

struct CustomerSim {
    p: Persona,
    current: Acct,
    savings: Option<Acct>,
    card: Option<Acct>,
    foreign: Option<(Acct, u32)>,
    contacts: [u32; 8],
}

fn day_start(d: Date) -> i64 {
    d.midnight().assume_offset(EAT).unix_timestamp()
}

fn at(d: Date, hour: i64, rng: &mut ChaCha8Rng) -> i64 {
    day_start(d) + hour * 3600 + rng.random_range(0..3600)
}

/// KES rate per unit of foreign currency, in KES minor units per foreign minor unit ×1000.
fn fx_rate_milli(c: Currency, rng: &mut ChaCha8Rng) -> i64 {
    let base = match c {
        Currency::USD => 129_000,
        Currency::EUR => 140_000,
        Currency::GBP => 163_000,
        Currency::KES => 1_000,
    };
    base + rng.random_range(-2_000..2_000)
}

fn receipt(rng: &mut ChaCha8Rng) -> Box<str> {
    const A: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
    let s: String = std::iter::once('S')
        .chain((0..9).map(|_| A[rng.random_range(0..A.len())] as char))
        .collect();
    s.into_boxed_str()
}

impl CustomerSim {
    fn create(
        bank: &mut Bank,
        refs: &RefData,
        cfg: &GeneratorConfig,
        i: usize,
        p: Persona,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self, CoreError> {
        let start = cfg.today - Duration::days(i64::from(cfg.history_days));
        let cust_id = format!("CUS{:07}", i + 1);
        let (town, post) = TOWNS[p.town];
        bank.add_customer(Customer {
            id: cust_id.clone(),
            username: p.username.clone(),
            name: p.name.clone(),
            email: format!("{}@example.co.ke", p.username),
            phone: format!("+{}", msisdn(rng)),
            address: Address {
                lines: vec![format!(
                    "House {}, {} Road",
                    rng.random_range(1..200u32),
                    FIRST[rng.random_range(0..FIRST.len())]
                )],
                town: town.into(),
                post_code: post.into(),
                country: "KE".into(),
            },
            party_id: format!("PTY{:07}", i + 1),
            party_number: format!("{:08}", 10_000_000 + i),
        })?;
        let mut n = 0u32;
        let mut open =
            |bank: &mut Bank, kind: AccountKind, currency: Currency, nick: &str, limit: i64| {
                n += 1;
                let seq = i as u64 * 8 + u64::from(n);
                let id = account_id(cfg.seed, seq);
                let identification = match kind {
                    AccountKind::CreditCard => AccountIdentification {
                        scheme: "UK.OBIE.PAN".into(),
                        identification: format!("539983******{:04}", seq % 10_000),
                        name: p.name.clone(),
                    },
                    _ => AccountIdentification {
                        scheme: "KE.WEKEZA.AccountNumber".into(),
                        identification: format!("01{:011}", 20_000_000_000 + seq),
                        name: p.name.clone(),
                    },
                };
                let description = match kind {
                    AccountKind::Current => "Personal current account",
                    AccountKind::Savings => "Personal savings account",
                    AccountKind::CreditCard => "Wekeza World Mastercard",
                };
                bank.open_account(Account {
                    id,
                    customer_id: cust_id.clone(),
                    kind,
                    currency,
                    nickname: nick.into(),
                    description: description.into(),
                    opening_date: start,
                    identification,
                    servicer_bic: "WKZAKENA".into(),
                    credit_limit: limit,
                })
                .map(|ledger| Acct { ledger, limit })
            };
        let current = open(
            bank,
            AccountKind::Current,
            Currency::KES,
            "Everyday",
            p.overdraft,
        )?;
        let savings = if p.savings {
            Some(open(
                bank,
                AccountKind::Savings,
                Currency::KES,
                "Savings",
                0,
            )?)
        } else {
            None
        };
        let card = match p.card_limit {
            Some(l) => Some(open(
                bank,
                AccountKind::CreditCard,
                Currency::KES,
                "Card",
                l,
            )?),
            None => None,
        };
        let foreign = match p.foreign {
            Some(c) => {
                let a = open(bank, AccountKind::Current, c, &format!("{c} account"), 0)?;
                let payer = refs
                    .foreign_payers
                    .iter()
                    .find(|(fc, _)| *fc == c)
                    .map(|(_, id)| *id)
                    .ok_or(CoreError::InvalidPosting("no foreign payer"))?;
                Some((a, payer))
            }
            None => None,
        };
        let mut contacts = [0u32; 8];
        for c in &mut contacts {
            *c = refs.contacts[rng.random_range(0..refs.contacts.len())];
        }
        let sim = Self {
            p,
            current,
            savings,
            card,
            foreign,
            contacts,
        };
        sim.reference_data(bank, refs, cfg, start, &cust_id)?;
        Ok(sim)
    }

    /// Beneficiaries and the rent standing order, consistent with the history.
    fn reference_data(
        &self,
        bank: &mut Bank,
        refs: &RefData,
        cfg: &GeneratorConfig,
        start: Date,
        cust_id: &str,
    ) -> Result<(), CoreError> {
        let current_id = bank
            .accounts_of(cust_id)
            .first()
            .map(|a| a.id.clone())
            .ok_or_else(|| CoreError::UnknownCustomer(cust_id.to_owned()))?;
        let ident = |bank: &Bank, cp: u32| -> Option<AccountIdentification> {
            bank_cp(bank, cp).map(|c| AccountIdentification {
                scheme: c.scheme.to_string(),
                identification: c.identification.to_string(),
                name: c.name.to_string(),
            })
        };
        let landlord = refs.landlords[self.p.landlord];
        let mut bens = vec![(landlord, true, "RENT".to_owned())];
        bens.extend(
            self.contacts
                .iter()
                .take(3)
                .map(|c| (*c, false, "M-PESA".to_owned())),
        );
        bens.push((refs.kplc, true, "KPLC TOKENS".to_owned()));
        for (k, (cp, trusted, reference)) in bens.into_iter().enumerate() {
            if let Some(creditor) = ident(bank, cp) {
                bank.add_beneficiary(Beneficiary {
                    beneficiary_id: format!("BEN-{}-{}", &cust_id[3..], k + 1),
                    account_id: current_id.clone(),
                    reference,
                    is_trusted: trusted,
                    creditor,
                })?;
            }
        }
        let first = Date::from_calendar_date(start.year(), start.month(), 1)
            .map_err(|_| CoreError::InvalidPosting("date"))?;
        let first = if first < start {
            next_month(first)
        } else {
            first
        };
        let mut next = Date::from_calendar_date(cfg.today.year(), cfg.today.month(), 1)
            .map_err(|_| CoreError::InvalidPosting("date"))?;
        if next < cfg.today {
            next = next_month(next);
        }
        if let Some(creditor) = ident(bank, landlord) {
            bank.add_standing_order(StandingOrder {
                standing_order_id: format!("SO-{}-1", &cust_id[3..]),
                account_id: current_id,
                day_of_month: 1,
                reference: format!("RENT {}", self.p.username.to_uppercase()),
                first_payment: first,
                next_payment: next,
                last_payment: Some(prev_month(next)),
                amount: crate::Money::new(self.p.rent, Currency::KES),
                is_active: true,
                creditor,
            })?;
        }
        Ok(())
    }

    fn plan(&self, refs: &RefData, cfg: &GeneratorConfig, rng: &mut ChaCha8Rng) -> Vec<(i64, Ev)> {
        let start = cfg.today - Duration::days(i64::from(cfg.history_days));
        let end = day_start(cfg.today);
        let mut evs: Vec<(i64, Ev)> = Vec::with_capacity(1024);
        let s = self.p.spend;
        let scale = |v: i64| v * s / 100;
        evs.push((
            day_start(start) + 60,
            Ev::Opening {
                acct: self.current,
                amount: scale(rng.random_range(20_000..150_000) * KES),
            },
        ));
        if let Some(a) = self.savings {
            evs.push((
                day_start(start) + 120,
                Ev::Opening {
                    acct: a,
                    amount: rng.random_range(50_000..500_000) * KES,
                },
            ));
        }
        if let Some((a, _)) = self.foreign {
            evs.push((
                day_start(start) + 180,
                Ev::Opening {
                    acct: a,
                    amount: rng.random_range(500..3_000) * 100,
                },
            ));
        }
        let mut d = start;
        while d < cfg.today {
            let day = d.day();
            let weekend = matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday);
            let last_of_month = next_day(d).day() == 1;
            // Salary on the 25th, or the Friday before when it falls on a weekend.
            let payday = match d.weekday() {
                Weekday::Friday => (25..=27).contains(&day),
                Weekday::Saturday | Weekday::Sunday => false,
                _ => day == 25,
            };
            if payday {
                let jitter = rng.random_range(-500..500) * KES;
                evs.push((
                    at(d, 9, rng),
                    Ev::Salary {
                        amount: self.p.salary + jitter.min(0),
                    },
                ));
            }
            if day == 1 {
                evs.push((day_start(d) + 7 * 3600, Ev::Rent));
            }
            if day == 5 && self.card.is_some() {
                evs.push((at(d, 10, rng), Ev::CardRepayment));
            }
            if day == 26 && self.savings.is_some() {
                evs.push((at(d, 11, rng), Ev::SavingsSweep));
            }
            if last_of_month {
                evs.push((day_start(d) + 23 * 3600 + 1800, Ev::MonthlyFee));
                if self.savings.is_some() {
                    evs.push((day_start(d) + 23 * 3600 + 3000, Ev::Interest));
                }
            }
            if day % 9 == 3 {
                evs.push((
                    at(d, 19, rng),
                    Ev::Bill {
                        cp: refs.kplc,
                        amount: rng.random_range(10..30) * 100 * KES,
                    },
                ));
            }
            if day == 12 {
                evs.push((
                    at(d, 12, rng),
                    Ev::Bill {
                        cp: refs.water,
                        amount: rng.random_range(800..2_000) * KES,
                    },
                ));
            }
            if day == 8 {
                evs.push((
                    at(d, 8, rng),
                    Ev::Bill {
                        cp: refs.internet,
                        amount: 4_100 * KES,
                    },
                ));
            }
            if day == 14 && self.card.is_some() {
                evs.push((
                    at(d, 3, rng),
                    Ev::CardSpend {
                        kind: TxKind::Subscription,
                        merchant: refs.netflix,
                        amount: 1_100 * KES,
                        value: day_start(d) - 3600,
                    },
                ));
            }
            if day == 17 && self.card.is_some() {
                evs.push((
                    at(d, 3, rng),
                    Ev::CardSpend {
                        kind: TxKind::Subscription,
                        merchant: refs.spotify,
                        amount: 390 * KES,
                        value: day_start(d) - 3600,
                    },
                ));
            }
            if rng.random_bool(0.25) {
                evs.push((
                    at(d, rng.random_range(7..21), rng),
                    Ev::Airtime {
                        amount: rng.random_range(1..20) * 50 * KES,
                    },
                ));
            }
            for _ in 0..rng.random_range(0..3) {
                if rng.random_bool(0.45) {
                    let c = self.contacts[rng.random_range(0..self.contacts.len())];
                    evs.push((
                        at(d, rng.random_range(7..22), rng),
                        Ev::MpesaOut {
                            cp: c,
                            amount: scale(rng.random_range(2..150) * 100 * KES),
                        },
                    ));
                }
            }
            if rng.random_bool(0.08) {
                let c = self.contacts[rng.random_range(0..self.contacts.len())];
                evs.push((
                    at(d, rng.random_range(7..22), rng),
                    Ev::MpesaIn {
                        cp: c,
                        amount: rng.random_range(5..200) * 100 * KES,
                    },
                ));
            }
            // Card spends: made today (value date), booked the next morning.
            let mut spend = |kind: TxKind,
                             p: f64,
                             pool: &[u32],
                             lo: i64,
                             hi: i64,
                             hour: i64,
                             rng: &mut ChaCha8Rng| {
                if rng.random_bool(p) {
                    let value = at(d, hour, rng);
                    let booking = day_start(next_day(d)) + rng.random_range(3_600..5 * 3_600);
                    evs.push((
                        booking,
                        Ev::CardSpend {
                            kind,
                            merchant: pool[rng.random_range(0..pool.len())],
                            amount: scale(rng.random_range(lo..hi) * KES),
                            value,
                        },
                    ));
                }
            };
            spend(
                TxKind::Supermarket,
                if weekend { 0.6 } else { 0.25 },
                &refs.supermarkets,
                800,
                14_000,
                17,
                rng,
            );
            spend(TxKind::Fuel, 0.14, &refs.fuel, 2_500, 7_000, 8, rng);
            spend(
                TxKind::Restaurant,
                if weekend { 0.35 } else { 0.1 },
                &refs.restaurants,
                600,
                4_500,
                13,
                rng,
            );
            if self.foreign.is_some() && day == 3 && rng.random_bool(0.8) {
                evs.push((
                    at(d, 15, rng),
                    Ev::ForeignIncome {
                        amount: rng.random_range(800..2_500) * 100 + rng.random_range(0..100),
                    },
                ));
            }
            if self.foreign.is_some() && day == 10 && rng.random_bool(0.5) {
                evs.push((at(d, 11, rng), Ev::FxConvert));
            }
            d = next_day(d);
        }
        evs.retain(|(t, _)| *t < end);
        // Stable sort: equal times keep planning order, so the result is deterministic.
        evs.sort_by_key(|(t, _)| *t);
        evs
    }

    fn run(
        self,
        bank: &mut Bank,
        refs: &RefData,
        cfg: &GeneratorConfig,
        rng: &mut ChaCha8Rng,
    ) -> Result<(), CoreError> {
        let clearing = bank.internal(InternalAccount::Clearing, Currency::KES);
        let cards = bank.internal(InternalAccount::CardSettlement, Currency::KES);
        let interest = bank.internal(InternalAccount::InterestExpense, Currency::KES);
        let fees = bank.internal(InternalAccount::FeeIncome, Currency::KES);
        let fx_kes = bank.internal(InternalAccount::FxPosition, Currency::KES);
        let available = |bank: &Bank, a: Acct| -> Result<i64, CoreError> {
            Ok(bank.ledger().balance(a.ledger)? + a.limit)
        };
        let cur = self.current;
        for (t, ev) in self.plan(refs, cfg, rng) {
            match ev {
                Ev::Opening { acct, amount } => {
                    let c = bank.ledger().currency(acct.ledger)?;
                    let eq = bank.internal(InternalAccount::OpeningEquity, c);
                    bank.post_transfer(
                        TxKind::OpeningBalance,
                        t,
                        t,
                        acct.ledger,
                        eq,
                        amount,
                        None,
                        None,
                        None,
                    )?;
                }
                Ev::Salary { amount } => {
                    let emp = refs.employers[self.p.employer];
                    bank.post_transfer(
                        TxKind::Salary,
                        t,
                        t,
                        cur.ledger,
                        clearing,
                        amount,
                        Some(emp),
                        None,
                        Some(format!("SALARY {}", month_tag(t)).into()),
                    )?;
                }
                Ev::Rent => {
                    if available(bank, cur)? >= self.p.rent {
                        let ll = refs.landlords[self.p.landlord];
                        bank.post_transfer(
                            TxKind::Rent,
                            t,
                            t,
                            clearing,
                            cur.ledger,
                            self.p.rent,
                            Some(ll),
                            None,
                            Some(format!("RENT {}", self.p.username.to_uppercase()).into()),
                        )?;
                    }
                }
                Ev::CardRepayment => {
                    if let Some(card) = self.card {
                        let debt = -bank.ledger().balance(card.ledger)?;
                        let spare = bank.ledger().balance(cur.ledger)? - 10_000 * KES;
                        let pay = if spare >= debt {
                            debt
                        } else {
                            (debt / 20).min(spare.max(0))
                        };
                        if pay > 0 {
                            bank.post_transfer(
                                TxKind::CardRepayment,
                                t,
                                t,
                                card.ledger,
                                cur.ledger,
                                pay,
                                None,
                                None,
                                None,
                            )?;
                        }
                    }
                }
                Ev::SavingsSweep => {
                    if let Some(sv) = self.savings {
                        let amount = self.p.salary / 10 / KES * KES;
                        if bank.ledger().balance(cur.ledger)? - amount >= 20_000 * KES {
                            bank.post_transfer(
                                TxKind::SavingsTransfer,
                                t,
                                t,
                                sv.ledger,
                                cur.ledger,
                                amount,
                                None,
                                None,
                                Some("TO SAVINGS".into()),
                            )?;
                        }
                    }
                }
                Ev::Interest => {
                    if let Some(sv) = self.savings {
                        // 7% a year, paid monthly on the closing balance.
                        let amount = bank.ledger().balance(sv.ledger)? * 7 / 1200;
                        if amount > 0 {
                            bank.post_transfer(
                                TxKind::Interest,
                                t,
                                t,
                                sv.ledger,
                                interest,
                                amount,
                                None,
                                None,
                                None,
                            )?;
                        }
                    }
                }
                Ev::MonthlyFee => {
                    if available(bank, cur)? >= 250 * KES {
                        bank.post_transfer(
                            TxKind::Fee,
                            t,
                            t,
                            fees,
                            cur.ledger,
                            250 * KES,
                            None,
                            None,
                            Some("MONTHLY MAINTENANCE FEE".into()),
                        )?;
                    }
                }
                Ev::Bill { cp, amount } => {
                    if available(bank, cur)? >= amount {
                        bank.post_transfer(
                            TxKind::Utilities,
                            t,
                            t,
                            clearing,
                            cur.ledger,
                            amount,
                            Some(cp),
                            None,
                            Some(receipt(rng)),
                        )?;
                    }
                }
                Ev::Airtime { amount } => {
                    if available(bank, cur)? >= amount {
                        bank.post_transfer(
                            TxKind::Airtime,
                            t,
                            t,
                            clearing,
                            cur.ledger,
                            amount,
                            Some(refs.airtime),
                            None,
                            Some(receipt(rng)),
                        )?;
                    }
                }
                Ev::MpesaOut { cp, amount } => {
                    if available(bank, cur)? >= amount {
                        bank.post_transfer(
                            TxKind::MobileMoneyOut,
                            t,
                            t,
                            clearing,
                            cur.ledger,
                            amount,
                            Some(cp),
                            None,
                            Some(receipt(rng)),
                        )?;
                    }
                }
                Ev::MpesaIn { cp, amount } => {
                    bank.post_transfer(
                        TxKind::MobileMoneyIn,
                        t,
                        t,
                        cur.ledger,
                        clearing,
                        amount,
                        Some(cp),
                        None,
                        Some(receipt(rng)),
                    )?;
                }
                Ev::CardSpend {
                    kind,
                    merchant,
                    amount,
                    value,
                } => {
                    let acct = self.card.unwrap_or(cur);
                    if available(bank, acct)? >= amount {
                        bank.post_transfer(
                            kind,
                            t,
                            value,
                            cards,
                            acct.ledger,
                            amount,
                            None,
                            Some(merchant),
                            None,
                        )?;
                    }
                }
                Ev::ForeignIncome { amount } => {
                    if let Some((fa, payer)) = self.foreign {
                        let c = bank.ledger().currency(fa.ledger)?;
                        let fclear = bank.internal(InternalAccount::Clearing, c);
                        bank.post_transfer(
                            TxKind::ForeignIncome,
                            t,
                            t + 86_400,
                            fa.ledger,
                            fclear,
                            amount,
                            Some(payer),
                            None,
                            Some(format!("INV-{}", month_tag(t)).into()),
                        )?;
                    }
                }
                Ev::FxConvert => {
                    if let Some((fa, _)) = self.foreign {
                        let c = bank.ledger().currency(fa.ledger)?;
                        let bal = bank.ledger().balance(fa.ledger)?;
                        let amount = bal / 2;
                        if amount >= 100 * 100 {
                            let rate = fx_rate_milli(c, rng);
                            let kes = amount * rate / 1_000;
                            let fpos = bank.internal(InternalAccount::FxPosition, c);
                            let r: Box<str> = format!("FX{}", receipt(rng)).into();
                            bank.post_transfer(
                                TxKind::FxConversion,
                                t,
                                t,
                                fpos,
                                fa.ledger,
                                amount,
                                None,
                                None,
                                Some(r.clone()),
                            )?;
                            bank.post_transfer(
                                TxKind::FxConversion,
                                t,
                                t,
                                cur.ledger,
                                fx_kes,
                                kes,
                                None,
                                None,
                                Some(r),
                            )?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn bank_cp(bank: &Bank, cp: u32) -> Option<Counterparty> {
    bank.counterparty(cp).cloned()
}

fn account_id(seed: u64, seq: u64) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(seq.to_le_bytes());
    let d = h.finalize();
    format!("acc-{}", hex::encode(&d[..8]))
}

fn month_tag(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| {
            let d = d.to_offset(EAT);
            format!("{:04}{:02}", d.year(), u8::from(d.month()))
        })
        .unwrap_or_default()
}

fn next_day(d: Date) -> Date {
    d.next_day().unwrap_or(d)
}

fn next_month(d: Date) -> Date {
    let (y, m) = if d.month() == Month::December {
        (d.year() + 1, Month::January)
    } else {
        (d.year(), d.month().next())
    };
    Date::from_calendar_date(y, m, 1).unwrap_or(d)
}

fn prev_month(d: Date) -> Date {
    let (y, m) = if d.month() == Month::January {
        (d.year() - 1, Month::December)
    } else {
        (d.year(), d.month().previous())
    };
    Date::from_calendar_date(y, m, 1).unwrap_or(d)
}
