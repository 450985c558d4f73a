//! Reference data the generated bank shares (counterparties, merchants, name lists) and
//! the customer personas.

use crate::bank::Bank;
use crate::model::{Counterparty, Merchant};
use crate::money::Currency;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

// ---- reference data ----------------------------------------------------------------------

pub(super) const FIRST: [&str; 24] = [
    "Wanjiru",
    "Otieno",
    "Achieng",
    "Kamau",
    "Njeri",
    "Mutua",
    "Akinyi",
    "Kiprop",
    "Wambui",
    "Omondi",
    "Chebet",
    "Mwangi",
    "Nyambura",
    "Kipchoge",
    "Atieno",
    "Githinji",
    "Moraa",
    "Barasa",
    "Jepkosgei",
    "Ochieng",
    "Muthoni",
    "Kiptoo",
    "Adhiambo",
    "Njoroge",
];
pub(super) const GIVEN: [&str; 16] = [
    "Grace", "Brian", "Faith", "Kevin", "Mercy", "Dennis", "Joy", "Collins", "Esther", "Samuel",
    "Purity", "Victor", "Lucy", "Peter", "Ann", "James",
];
pub(super) const TOWNS: [(&str, &str); 6] = [
    ("Nairobi", "00100"),
    ("Mombasa", "80100"),
    ("Kisumu", "40100"),
    ("Nakuru", "20100"),
    ("Eldoret", "30100"),
    ("Thika", "01000"),
];

pub(super) struct RefData {
    pub(super) contacts: Vec<u32>,
    pub(super) employers: Vec<u32>,
    pub(super) landlords: Vec<u32>,
    pub(super) foreign_payers: Vec<(Currency, u32)>,
    pub(super) kplc: u32,
    pub(super) water: u32,
    pub(super) internet: u32,
    pub(super) airtime: u32,
    pub(super) supermarkets: Vec<u32>,
    pub(super) fuel: Vec<u32>,
    pub(super) restaurants: Vec<u32>,
    pub(super) netflix: u32,
    pub(super) spotify: u32,
}

pub(super) fn cp(bank: &mut Bank, name: &str, scheme: &str, id: &str) -> u32 {
    bank.add_counterparty(Counterparty {
        name: Arc::from(name),
        scheme: Arc::from(scheme),
        identification: Arc::from(id),
    })
}

pub(super) fn merchant(bank: &mut Bank, name: &str, mcc: u16) -> u32 {
    bank.add_merchant(Merchant {
        name: Arc::from(name),
        mcc,
    })
}

pub(super) fn msisdn(rng: &mut ChaCha8Rng) -> String {
    format!("2547{:08}", rng.random_range(0..100_000_000u32))
}

impl RefData {
    pub(super) fn new(bank: &mut Bank, rng: &mut ChaCha8Rng) -> Self {
        let contacts = (0..300)
            .map(|_| {
                let name = format!(
                    "{} {}",
                    GIVEN[rng.random_range(0..GIVEN.len())],
                    FIRST[rng.random_range(0..FIRST.len())]
                );
                let phone = msisdn(rng);
                cp(bank, &name, "KE.MPESA.MSISDN", &phone)
            })
            .collect();
        let bank_acct = |rng: &mut ChaCha8Rng| {
            format!(
                "{:02}-{:010}",
                rng.random_range(1..70u32),
                rng.random_range(0..10_000_000_000u64)
            )
        };
        let mut employers = Vec::new();
        for e in [
            "Savannah Tech Ltd",
            "Kenya Tea Growers Co-operative",
            "Rift Valley Logistics Ltd",
            "Jamii Health Services",
            "Lakeside Teachers Service",
            "Mombasa Port Services Ltd",
        ] {
            let a = bank_acct(rng);
            employers.push(cp(bank, e, "KE.BANK.AccountNumber", &a));
        }
        let mut landlords = Vec::new();
        for l in [
            "Greenpark Properties Ltd",
            "Kilimani Heights Management",
            "Njeri Gathoni",
            "Riverside Court Residents Assoc",
        ] {
            let a = bank_acct(rng);
            landlords.push(cp(bank, l, "KE.BANK.AccountNumber", &a));
        }
        let foreign_payers = vec![
            (
                Currency::USD,
                cp(
                    bank,
                    "Northwind Inc",
                    "UK.OBIE.IBAN",
                    "US64SVBKUS6S3300958879",
                ),
            ),
            (
                Currency::GBP,
                cp(
                    bank,
                    "Thames Analytics Ltd",
                    "UK.OBIE.IBAN",
                    "GB33BUKB20201555555555",
                ),
            ),
            (
                Currency::EUR,
                cp(
                    bank,
                    "Stiftung Offene Daten",
                    "UK.OBIE.IBAN",
                    "DE89370400440532013000",
                ),
            ),
        ];
        Self {
            contacts,
            employers,
            landlords,
            foreign_payers,
            kplc: cp(bank, "KPLC Prepaid", "KE.MPESA.PAYBILL", "888880"),
            water: cp(bank, "Nairobi City Water", "KE.MPESA.PAYBILL", "444400"),
            internet: cp(bank, "Safaricom Home Fibre", "KE.MPESA.PAYBILL", "150501"),
            airtime: cp(bank, "Safaricom Airtime", "KE.MPESA.PAYBILL", "100000"),
            supermarkets: vec![
                merchant(bank, "Naivas Westlands", 5411),
                merchant(bank, "Carrefour Two Rivers", 5411),
                merchant(bank, "Quickmart Kilimani", 5411),
                merchant(bank, "Chandarana Foodplus Yaya", 5411),
            ],
            fuel: vec![
                merchant(bank, "Rubis Ngong Road", 5541),
                merchant(bank, "TotalEnergies Waiyaki Way", 5541),
                merchant(bank, "Shell Langata Road", 5541),
                merchant(bank, "Ola Energy Thika Road", 5541),
            ],
            restaurants: vec![
                merchant(bank, "Java House Junction", 5812),
                merchant(bank, "Artcaffe Westgate", 5812),
                merchant(bank, "KFC Sarit Centre", 5814),
                merchant(bank, "Mama Oliech Restaurant", 5812),
            ],
            netflix: merchant(bank, "NETFLIX.COM", 4899),
            spotify: merchant(bank, "Spotify", 5815),
        }
    }
}

// ---- personas --------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(super) struct Persona {
    pub(super) username: String,
    pub(super) name: String,
    pub(super) town: usize,
    pub(super) employer: usize,
    /// Monthly net salary, KES minor units.
    pub(super) salary: i64,
    pub(super) rent: i64,
    pub(super) landlord: usize,
    pub(super) overdraft: i64,
    pub(super) card_limit: Option<i64>,
    pub(super) savings: bool,
    pub(super) foreign: Option<Currency>,
    /// Spending intensity in percent (100 = typical).
    pub(super) spend: i64,
}

pub(super) const KES: i64 = 100; // minor units per shilling

pub(super) fn personas() -> Vec<Persona> {
    vec![
        Persona {
            username: "alice".into(),
            name: "Alice Wanjiru Kamau".into(),
            town: 0,
            employer: 0,
            salary: 185_000 * KES,
            rent: 45_000 * KES,
            landlord: 0,
            overdraft: 50_000 * KES,
            card_limit: Some(300_000 * KES),
            savings: true,
            foreign: Some(Currency::USD),
            spend: 110,
        },
        Persona {
            username: "bob".into(),
            name: "Brian Otieno Odhiambo".into(),
            town: 2,
            employer: 1,
            salary: 96_000 * KES,
            rent: 22_000 * KES,
            landlord: 1,
            overdraft: 0,
            card_limit: Some(120_000 * KES),
            savings: false,
            foreign: Some(Currency::GBP),
            spend: 90,
        },
        Persona {
            username: "carol".into(),
            name: "Chebet Jepkosgei".into(),
            town: 4,
            employer: 3,
            salary: 142_000 * KES,
            rent: 30_000 * KES,
            landlord: 2,
            overdraft: 20_000 * KES,
            card_limit: None,
            savings: true,
            foreign: Some(Currency::EUR),
            spend: 80,
        },
        Persona {
            username: "david".into(),
            name: "David Mwangi Njoroge".into(),
            town: 1,
            employer: 5,
            salary: 64_000 * KES,
            rent: 15_000 * KES,
            landlord: 3,
            overdraft: 0,
            card_limit: Some(60_000 * KES),
            savings: true,
            foreign: None,
            spend: 70,
        },
    ]
}

pub(super) fn random_persona(i: usize, rng: &mut ChaCha8Rng, refs: &RefData) -> Persona {
    let salary = rng.random_range(35_000..400_000i64) * KES;
    Persona {
        username: format!("cust{i:06}"),
        name: format!(
            "{} {}",
            GIVEN[rng.random_range(0..GIVEN.len())],
            FIRST[rng.random_range(0..FIRST.len())]
        ),
        town: rng.random_range(0..TOWNS.len()),
        employer: rng.random_range(0..refs.employers.len()),
        salary,
        rent: salary * rng.random_range(15..35i64) / 100 / KES * KES,
        landlord: rng.random_range(0..refs.landlords.len()),
        overdraft: if rng.random_bool(0.3) {
            salary / 4 / KES * KES
        } else {
            0
        },
        card_limit: rng.random_bool(0.6).then_some(salary * 2),
        savings: rng.random_bool(0.5),
        foreign: if rng.random_bool(0.15) {
            Some(Currency::ALL[rng.random_range(1..4usize)])
        } else {
            None
        },
        spend: rng.random_range(60..140),
    }
}
