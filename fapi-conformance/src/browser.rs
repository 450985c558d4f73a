//! The customer's side without JavaScript: a cookie-keeping HTTPS agent that follows the
//! bank's login, second-factor and consent forms the way a no-JS browser would. Real
//! browsers (Chromium via Playwright) are exercised separately under `tests/browser/`.

use anyhow::Context;
use reqwest::{Certificate, StatusCode};
use url::Url;

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub html: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    /// The hidden `csrf` field of the page's form.
    pub fn csrf(&self) -> Option<String> {
        let i = self.html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let rest = &self.html[i..];
        Some(rest[..rest.find('"')?].to_owned())
    }

    /// The values of the `account` checkboxes on a consent page, in page order.
    pub fn account_choices(&self) -> Vec<String> {
        const MARK: &str = "name=\"account\" value=\"";
        let mut out = Vec::new();
        let mut rest = self.html.as_str();
        while let Some(i) = rest.find(MARK) {
            rest = &rest[i + MARK.len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_owned());
            }
        }
        out
    }
}

pub struct Customer {
    http: reqwest::Client,
    base: Url,
}

/// The current RFC 6238 code (SHA-1, 6 digits, 30 s) at `unix_time`.
pub fn totp(secret_b32: &str, unix_time: i64) -> anyhow::Result<String> {
    let secret =
        totp_rs::Secret::try_from_base32(secret_b32).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let t = totp_rs::Builder::new()
        .with_secret(secret)
        .build()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(t.generate(unix_time.max(0) as u64).to_string())
}

impl Customer {
    pub fn new(ca_pem: &[u8], issuer: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .tls_certs_only([Certificate::from_pem(ca_pem)?])
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()?;
        Ok(Self {
            http,
            base: Url::parse(issuer)?,
        })
    }

    fn abs(&self, u: &str) -> anyhow::Result<Url> {
        Ok(self.base.join(u)?)
    }

    async fn page(r: reqwest::Response) -> anyhow::Result<Page> {
        let status = r.status();
        let headers = r.headers().clone();
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Page {
            status,
            location,
            html: r.text().await?,
            headers,
        })
    }

    pub async fn get(&self, url: &str) -> anyhow::Result<Page> {
        Self::page(self.http.get(self.abs(url)?).send().await?).await
    }

    pub async fn post(&self, url: &str, form: &[(&str, &str)]) -> anyhow::Result<Page> {
        Self::page(self.http.post(self.abs(url)?).form(form).send().await?).await
    }

    /// Open the authorization URL and the login page it leads to.
    pub async fn open(&self, authorize_url: &str) -> anyhow::Result<Page> {
        let first = self.get(authorize_url).await?;
        match first.location.as_deref() {
            Some(l) if first.status == StatusCode::SEE_OTHER && l.starts_with('/') => {
                self.get(l).await
            }
            _ => Ok(first),
        }
    }

    /// Password, then TOTP; returns the consent page.
    pub async fn sign_in(
        &self,
        login: &Page,
        username: &str,
        password: &str,
        otp: &str,
    ) -> anyhow::Result<Page> {
        let csrf = login.csrf().context("login page has no csrf field")?;
        let r = self
            .post(
                "/login",
                &[
                    ("csrf", &csrf),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await?;
        anyhow::ensure!(
            r.location.as_deref() == Some("/login/otp"),
            "password step failed: {} {:?}",
            r.status,
            r.location
        );
        let r = self
            .post("/login/otp", &[("csrf", &csrf), ("otp", otp)])
            .await?;
        anyhow::ensure!(
            r.location.as_deref() == Some("/consent"),
            "OTP step failed: {} {:?}",
            r.status,
            r.location
        );
        self.get("/consent").await
    }

    /// Approve or deny; returns the redirect back to the client. On an account-access
    /// consent page every offered account is shared.
    pub async fn decide(&self, consent: &Page, approve: bool) -> anyhow::Result<Url> {
        let all = consent.account_choices();
        let picked: Vec<&str> = all.iter().map(String::as_str).collect();
        self.decide_accounts(consent, approve, &picked).await
    }

    /// Approve or deny, sharing exactly `accounts`.
    pub async fn decide_accounts(
        &self,
        consent: &Page,
        approve: bool,
        accounts: &[&str],
    ) -> anyhow::Result<Url> {
        let r = self.post_decision(consent, approve, accounts).await?;
        anyhow::ensure!(
            r.status == StatusCode::SEE_OTHER,
            "consent answered {}: {}",
            r.status,
            r.html.chars().take(300).collect::<String>()
        );
        Ok(Url::parse(
            r.location.as_deref().context("no redirect after consent")?,
        )?)
    }

    /// POST the consent form as the page would; the raw answer.
    pub async fn post_decision(
        &self,
        consent: &Page,
        approve: bool,
        accounts: &[&str],
    ) -> anyhow::Result<Page> {
        let csrf = consent.csrf().context("consent page has no csrf field")?;
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("decision", if approve { "approve" } else { "deny" }),
        ];
        for a in accounts {
            form.push(("account", a));
        }
        self.post("/consent", &form).await
    }

    /// The whole interaction, returning the redirect to the client.
    pub async fn authorize(
        &self,
        authorize_url: &str,
        username: &str,
        password: &str,
        otp: &str,
        approve: bool,
    ) -> anyhow::Result<Url> {
        let login = self.open(authorize_url).await?;
        anyhow::ensure!(
            login.status == StatusCode::OK,
            "authorization page answered {}: {}",
            login.status,
            login.html.chars().take(300).collect::<String>()
        );
        let consent = self.sign_in(&login, username, password, otp).await?;
        self.decide(&consent, approve).await
    }
}

/// A query parameter of a redirect URL.
pub fn param(u: &Url, k: &str) -> Option<String> {
    u.query_pairs()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.into_owned())
}
