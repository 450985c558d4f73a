//! Server-rendered HTML pages shown to a Wekeza Bank customer during an
//! OAuth 2.0 / FAPI 2.0 authorization: sign-in, second factor (TOTP),
//! consent, error and a plain information page (e.g. "sign-in complete").
//!
//! This crate performs no I/O. Every `render_*` function turns a page model
//! into an HTML `String`; the caller (the authorization server) is responsible
//! for sending it together with the security headers.
//!
//! The markup is built to run under a strict Content-Security-Policy:
//! no inline `<style>`/`<script>`, no `style=""` attributes and no JavaScript
//! at all. Every page links a single stylesheet, [`STYLESHEET`], which the
//! server must serve at [`STYLESHEET_PATH`] (`text/css; charset=utf-8`).
//!
//! All interpolated values are HTML-escaped by askama.

pub mod dashboard;
pub mod passkey;
pub mod portal;
pub mod security;
pub mod usage;

use std::fmt;

use askama::Template;
use serde::{Deserialize, Serialize};

/// The CSS for every page, to be served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("../assets/wekeza.css");

/// Path at which the pages expect [`STYLESHEET`] to be served.
pub const STYLESHEET_PATH: &str = "/assets/wekeza.css";

/// Error returned when a template fails to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to render page: {}", self.0)
    }
}

impl std::error::Error for RenderError {}

impl From<askama::Error> for RenderError {
    fn from(err: askama::Error) -> Self {
        RenderError(err.to_string())
    }
}

/// A scope described in words a customer understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeView {
    /// The raw scope value, e.g. `accounts`.
    pub name: String,
    /// Short heading, e.g. "See your accounts and transactions".
    pub title: String,
    /// One or two sentences explaining what granting the scope allows.
    pub description: String,
}

/// Human wording for a scope.
///
/// The bank understands `openid`, `profile`, `accounts`, `payments`,
/// `fundsconfirmations` and `offline_access`. Any other scope gets a neutral
/// title equal to the scope value and a description stating that it is an
/// additional permission requested by the provider. Matching is exact
/// (OAuth scope values are case-sensitive).
pub fn describe_scope(scope: &str) -> ScopeView {
    let (title, description) = match scope {
        "openid" => (
            "Confirm it is you",
            "Receive a unique identifier for your Wekeza Bank sign-in, so it can recognise you next time. It does not include your password.",
        ),
        "profile" => (
            "See your basic profile",
            "Your name and the basic personal details held on your Wekeza Bank customer profile.",
        ),
        "accounts" => (
            "See your accounts and transactions",
            "Account names and numbers, balances, and the transaction history of your Wekeza Bank accounts.",
        ),
        "payments" => (
            "Make payments for you",
            "Send payments from your Wekeza Bank accounts when you ask it to. Money can leave your account with this permission.",
        ),
        "fundsconfirmations" => (
            "Check you have enough money",
            "Ask whether your account can cover a specific amount. It only gets a yes or no answer, not your balance.",
        ),
        "offline_access" => (
            "Keep access while you are away",
            "Keep using the other permissions listed here without asking you to sign in again, until the access ends or you withdraw it.",
        ),
        other => {
            return ScopeView {
                name: other.to_owned(),
                title: other.to_owned(),
                description: "An additional permission requested by the provider.".to_owned(),
            };
        }
    };
    ScopeView {
        name: scope.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
    }
}

/// The username/password sign-in page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginPage {
    /// Display name of the client (provider) that started the sign-in.
    pub client_name: String,
    /// CSRF token, echoed in a hidden `csrf` field.
    pub csrf: String,
    /// Username to pre-fill (e.g. after a failed attempt); may be empty.
    pub username: String,
    /// Message shown in the `#error` box; `None` hides the box.
    pub error: Option<String>,
    /// Form POST target path, e.g. `/login`.
    pub action: String,
}

/// The second-factor (TOTP) page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpPage {
    /// Display name of the client (provider) that started the sign-in.
    pub client_name: String,
    /// CSRF token, echoed in a hidden `csrf` field.
    pub csrf: String,
    /// Message shown in the `#error` box; `None` hides the box.
    pub error: Option<String>,
    /// Form POST target path, e.g. `/login/otp`.
    pub action: String,
}

/// The consent page: who is asking, for what, for how long, and where the
/// customer will be sent back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentPage {
    /// Display name of the client asking for access.
    pub client_name: String,
    /// The registered client identifier (shown in small print).
    pub client_id: String,
    /// Same-origin URL of the client's logo (`#client-logo`); `None` shows its initial.
    #[serde(default)]
    pub logo_url: Option<String>,
    /// The client's registered home page, shown as plain text (not a link).
    pub client_uri: Option<String>,
    /// Name of the signed-in customer.
    pub customer_name: String,
    /// The requested permissions, typically built with [`describe_scope`].
    pub scopes: Vec<ScopeView>,
    /// Duration wording that completes "This access lasts …", e.g.
    /// `"until 24 Feb 2027"`. `None` says that no end date was set.
    pub expires_text: Option<String>,
    /// Host the customer will be redirected to after deciding.
    pub redirect_host: String,
    /// CSRF token, echoed in a hidden `csrf` field.
    pub csrf: String,
    /// Form POST target path, e.g. `/consent`. The form posts
    /// `decision=approve` or `decision=deny`, plus one `account=<id>` per ticked account.
    pub action: String,
    /// Open-banking requests: the permissions in plain words, grouped (`#consent-permissions`).
    /// Empty for a plain scope request.
    #[serde(default)]
    pub permission_groups: Vec<PermissionGroup>,
    /// Open-banking requests: the accounts the customer may share, as checkboxes
    /// (`#account-<n>`, inside `#accounts`). Empty for a plain scope request.
    #[serde(default)]
    pub accounts: Vec<AccountChoice>,
    /// Wording for the transaction history window, e.g. `"from 1 Jan 2026 to 24 Nov 2026"`.
    #[serde(default)]
    pub transaction_window: Option<String>,
    /// Message shown in the `#error` box (e.g. no account picked); `None` hides it.
    #[serde(default)]
    pub error: Option<String>,
    /// A payment to approve (`#payment`): exactly what the customer authorises.
    #[serde(default)]
    pub payment: Option<PaymentSummary>,
    /// A file of payments to approve at once (`#file-payment`, template
    /// `consent_file_payment.html`).
    #[serde(default)]
    pub file_payment: Option<FilePaymentSummary>,
}

/// What a file-payment consent asks for: the batch, summarised (the authorisation covers
/// exactly this file: its count, total and payees).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePaymentSummary {
    /// How many payments (`#file-payment-count`).
    pub count: usize,
    /// The control sum with its currency, e.g. "KES 1,250.00" (`#file-payment-total`).
    pub total: String,
    /// The first few payees in file order (`#file-payee-<n>`).
    pub first_payees: Vec<FilePayee>,
    /// How many payees are not listed ("and N more", `#file-payment-more`); 0 hides it.
    pub more: usize,
    /// The TPP's `FileReference` (`#file-payment-reference`).
    pub reference: Option<String>,
    /// The account named in the request (`#file-payment-from`), when the TPP chose it.
    pub from_account: Option<String>,
    /// Otherwise the accounts the customer may pay from, as radio buttons posted as
    /// `account=<id>` (`#file-debtor-<n>`).
    pub from_choices: Vec<AccountChoice>,
}

/// One payee of a file, as previewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePayee {
    pub name: String,
    /// E.g. "Wekeza account 0100123456789".
    pub account: String,
    /// E.g. "KES 120.00".
    pub amount: String,
}

/// What a payment consent asks for, as the consent page shows it (dynamic linking: the
/// amount and payee shown are the ones the authorisation is bound to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSummary {
    /// E.g. "KES 165.88" (`#payment-amount`).
    pub amount: String,
    /// The payee's name (`#payment-payee`).
    pub payee_name: String,
    /// The payee's account, e.g. "Account number 0100123456789" (`#payment-payee-account`).
    pub payee_account: String,
    /// The payment reference (`#payment-reference`).
    pub reference: Option<String>,
    /// The account named in the request (`#payment-from`), when the TPP chose it.
    pub from_account: Option<String>,
    /// Otherwise the accounts the customer may pay from, as radio buttons posted as
    /// `account=<id>` (`#debtor-<n>`).
    pub from_choices: Vec<AccountChoice>,
}

/// One heading of permissions on the consent page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionGroup {
    pub title: String,
    pub items: Vec<String>,
}

/// An account the customer can tick on the consent page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountChoice {
    /// The account id posted back as `account=<id>`.
    pub id: String,
    /// E.g. "Everyday Current Account".
    pub name: String,
    /// E.g. "Current account · KES · ending 4821".
    pub detail: String,
    pub checked: bool,
}

/// A page explaining that something went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorPage {
    /// Page heading, e.g. "This sign-in link has expired".
    pub title: String,
    /// Explanation shown in the `#error` box.
    pub message: String,
    /// Technical error code, e.g. `invalid_request`.
    pub error_code: Option<String>,
    /// Support reference the customer can quote.
    pub reference: Option<String>,
}

/// A neutral information page, e.g. "Sign-in complete".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoPage {
    /// Page heading.
    pub title: String,
    /// Main message (element id `info`).
    pub message: String,
    /// Optional secondary text.
    pub detail: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTemplate<'a> {
    p: &'a LoginPage,
}

#[derive(Template)]
#[template(path = "otp.html")]
struct OtpTemplate<'a> {
    p: &'a OtpPage,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentTemplate<'a> {
    p: &'a ConsentPage,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate<'a> {
    p: &'a ErrorPage,
}

#[derive(Template)]
#[template(path = "info.html")]
struct InfoTemplate<'a> {
    p: &'a InfoPage,
}

/// Render the username/password sign-in page.
pub fn render_login(p: &LoginPage) -> Result<String, RenderError> {
    Ok(LoginTemplate { p }.render()?)
}

/// Render the one-time-code (TOTP) page.
pub fn render_otp(p: &OtpPage) -> Result<String, RenderError> {
    Ok(OtpTemplate { p }.render()?)
}

/// Render the consent page.
pub fn render_consent(p: &ConsentPage) -> Result<String, RenderError> {
    Ok(ConsentTemplate { p }.render()?)
}

/// Render an error page.
pub fn render_error(p: &ErrorPage) -> Result<String, RenderError> {
    Ok(ErrorTemplate { p }.render()?)
}

/// Render an information page (e.g. "sign-in complete, you can close this window").
pub fn render_info(p: &InfoPage) -> Result<String, RenderError> {
    Ok(InfoTemplate { p }.render()?)
}

#[cfg(test)]
mod tests;

/// The letter shown in place of a missing logo: the name's first letter or digit.
pub fn initial(name: &str) -> String {
    name.chars()
        .find(|c| c.is_alphanumeric())
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_else(|| "?".to_owned())
}
