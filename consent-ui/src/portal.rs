//! The developer portal (`/portal`, issue 9, ADR 0014): sign-up and sign-in, the
//! organisations with members and roles, apps with their sandbox clients and keys, the
//! one-time display of generated private keys, and the bank's go-live review.
//!
//! Like the rest of this crate: plain page models, no I/O, no inline script or style.

use askama::Template;
use serde::{Deserialize, Serialize};

use crate::RenderError;

/// The signed-in header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalNav {
    pub username: String,
    pub csrf: String,
    pub is_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoginPage {
    pub csrf: String,
    pub action: String,
    /// The sign-up form instead of the sign-in one.
    pub signup: bool,
    /// The second step: the TOTP code.
    pub otp_step: bool,
    pub username: String,
    pub email: String,
    pub error: Option<String>,
    pub notice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    pub title: String,
    pub message: String,
    pub is_error: bool,
    pub link_text: String,
    pub link_href: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSummary {
    pub id: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomePage {
    pub csrf: String,
    pub orgs: Vec<OrgSummary>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub developer_id: String,
    pub username: String,
    pub email: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationView {
    pub invitee: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummary {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    pub action: String,
    pub actor: String,
    pub detail: String,
    /// UTC, human-readable.
    pub when: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPage {
    pub csrf: String,
    pub org_id: String,
    pub org_name: String,
    pub role: String,
    pub is_owner: bool,
    pub can_manage_apps: bool,
    pub members: Vec<MemberView>,
    pub invitations: Vec<InvitationView>,
    pub apps: Vec<AppSummary>,
    /// Shown to owners only.
    pub audit: Vec<AuditView>,
    /// Sandbox test customers (username, password, TOTP secret), for owners and developers.
    pub test_customers: Vec<(String, String, String)>,
    pub notice: Option<String>,
    pub error: Option<String>,
    /// Sandbox event triggers (owners and developers): accounts the test customers see.
    pub sandbox_accounts: Vec<SandboxAccountView>,
    /// The org's apps' payments still in clearing (ACSP).
    pub clearing_payments: Vec<ClearingPaymentView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxAccountView {
    pub id: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearingPaymentView {
    pub id: String,
    pub app: String,
    pub amount: String,
    pub currency: String,
    /// UTC, human-readable.
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAppPage {
    pub csrf: String,
    pub org_id: String,
    pub org_name: String,
    pub sandbox_callback: String,
    /// (scope, checked)
    pub scopes: Vec<(String, bool)>,
    pub name: String,
    pub redirect_uris: String,
    pub auth_method: String,
    /// `generate`, `jwks` or `jwks_uri`.
    pub keys: String,
    pub jwks: String,
    pub jwks_uri: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPage {
    pub csrf: String,
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub org_name: String,
    pub status: String,
    pub client_id: String,
    pub auth_method: String,
    pub subject_dn: Option<String>,
    pub redirect_uris: Vec<String>,
    pub scope: String,
    pub keys_summary: String,
    pub cert_summary: String,
    pub golive_status: String,
    pub golive_reason: String,
    pub production_client_id: Option<String>,
    /// Owner or developer.
    pub can_manage: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// Private material generated for the developer, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsPage {
    pub app_id: String,
    pub app_name: String,
    /// (title, content)
    pub secrets: Vec<(String, String)>,
    /// `data:application/json;base64,…`: the kit with the keys, downloaded by the browser
    /// from the page itself (nothing is kept on the server to download later).
    pub kit_data_uri: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoLiveRequestView {
    pub app_id: String,
    pub app_name: String,
    pub org_id: String,
    pub org_name: String,
    pub org_created: String,
    pub members: String,
    pub client_id: String,
    pub auth_method: String,
    pub redirect_uris: String,
    pub scope: String,
    pub audit: Vec<AuditView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminPage {
    pub csrf: String,
    pub requests: Vec<GoLiveRequestView>,
    pub notice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocsPage {
    pub issuer: String,
    pub mtls_base: String,
    pub resource_base: String,
    pub swagger_url: String,
    pub as_openapi_url: String,
    pub rs_openapi_url: String,
    pub rs_docs_url: String,
    pub discovery_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorsPage {
    /// (code, HTTP status, when)
    pub oauth: Vec<(String, u16, String)>,
    /// (code, when)
    pub ob: Vec<(String, String)>,
}

/// Developer TOTP: its state, or the enrolment step (QR code and key) in progress.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecurityPage {
    pub csrf: String,
    pub totp_on: bool,
    /// Inline SVG built from booleans only (see the server's `password::qr_svg`).
    pub qr_svg: Option<String>,
    pub secret_text: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "portal_security.html")]
struct SecurityT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a SecurityPage,
}

pub fn render_security(nav: Option<&PortalNav>, p: &SecurityPage) -> Result<String, RenderError> {
    Ok(SecurityT { nav, p }.render()?)
}

#[derive(Template)]
#[template(path = "portal_docs.html")]
struct DocsT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a DocsPage,
}

#[derive(Template)]
#[template(path = "portal_guide.html")]
struct GuideT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a DocsPage,
}

#[derive(Template)]
#[template(path = "portal_errors.html")]
struct ErrorsT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a ErrorsPage,
}

pub fn render_docs(nav: Option<&PortalNav>, p: &DocsPage) -> Result<String, RenderError> {
    Ok(DocsT { nav, p }.render()?)
}
pub fn render_guide(nav: Option<&PortalNav>, p: &DocsPage) -> Result<String, RenderError> {
    Ok(GuideT { nav, p }.render()?)
}
pub fn render_errors(nav: Option<&PortalNav>, p: &ErrorsPage) -> Result<String, RenderError> {
    Ok(ErrorsT { nav, p }.render()?)
}

#[derive(Template)]
#[template(path = "portal_login.html")]
struct LoginT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a LoginPage,
}

#[derive(Template)]
#[template(path = "portal_message.html")]
struct MessageT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a MessagePage,
}

#[derive(Template)]
#[template(path = "portal_home.html")]
struct HomeT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a HomePage,
}

#[derive(Template)]
#[template(path = "portal_org.html")]
struct OrgT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a OrgPage,
}

#[derive(Template)]
#[template(path = "portal_app_new.html")]
struct NewAppT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a NewAppPage,
}

#[derive(Template)]
#[template(path = "portal_app.html")]
struct AppT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a AppPage,
}

#[derive(Template)]
#[template(path = "portal_secrets.html")]
struct SecretsT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a SecretsPage,
}

#[derive(Template)]
#[template(path = "portal_admin.html")]
struct AdminT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a AdminPage,
}

pub fn render_login(nav: Option<&PortalNav>, p: &LoginPage) -> Result<String, RenderError> {
    Ok(LoginT { nav, p }.render()?)
}
pub fn render_message(nav: Option<&PortalNav>, p: &MessagePage) -> Result<String, RenderError> {
    Ok(MessageT { nav, p }.render()?)
}
pub fn render_home(nav: Option<&PortalNav>, p: &HomePage) -> Result<String, RenderError> {
    Ok(HomeT { nav, p }.render()?)
}
pub fn render_org(nav: Option<&PortalNav>, p: &OrgPage) -> Result<String, RenderError> {
    Ok(OrgT { nav, p }.render()?)
}
pub fn render_new_app(nav: Option<&PortalNav>, p: &NewAppPage) -> Result<String, RenderError> {
    Ok(NewAppT { nav, p }.render()?)
}
pub fn render_app(nav: Option<&PortalNav>, p: &AppPage) -> Result<String, RenderError> {
    Ok(AppT { nav, p }.render()?)
}
pub fn render_secrets(nav: Option<&PortalNav>, p: &SecretsPage) -> Result<String, RenderError> {
    Ok(SecretsT { nav, p }.render()?)
}
pub fn render_admin(nav: Option<&PortalNav>, p: &AdminPage) -> Result<String, RenderError> {
    Ok(AdminT { nav, p }.render()?)
}

/// An org's API usage (issue 9): the gateway's metering drawn on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsagePage {
    pub org_id: String,
    pub org_name: String,
    /// The period in days (1, 7 or 30) and its wording.
    pub days: i64,
    pub period: String,
    pub calls: i64,
    pub errors: i64,
    pub error_rate: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
    /// SVG from [`crate::usage`], which escapes every text it draws.
    pub calls_svg: String,
    pub endpoints_svg: String,
    /// (server, method + endpoint, calls, errors, average latency).
    pub top: Vec<(String, String, i64, i64, String)>,
    /// (client id, plan, calls, billable calls).
    pub apps: Vec<(String, String, i64, i64)>,
    /// `YYYY-MM` of the statement shown.
    pub month: String,
    /// From [`crate::usage::statement_html`] (escaped there).
    pub statement_html: String,
}

#[derive(Template)]
#[template(path = "portal_usage.html")]
struct UsageT<'a> {
    nav: Option<&'a PortalNav>,
    p: &'a UsagePage,
}

pub fn render_usage(nav: Option<&PortalNav>, p: &UsagePage) -> Result<String, RenderError> {
    Ok(UsageT { nav, p }.render()?)
}
