//! The customer's consent dashboard (`/account`): sign-in (password, then security
//! code), the list of every consent per provider with its permissions, accounts, dates
//! and history, the confirmation step before withdrawing one, and short messages
//! (signed out, not found, too many attempts).
//!
//! Like the rest of this crate: plain page models, no I/O, no inline script or style.
//! The pages share `dashboard_base.html`, whose header carries the sign-out form when a
//! customer is signed in.

use askama::Template;
use serde::{Deserialize, Serialize};

use crate::{PermissionGroup, RenderError, ScopeView};

/// Where the dashboard lives.
pub const DASHBOARD_PATH: &str = "/account";

/// The signed-in header: who is signed in and the sign-out form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub customer_name: String,
    /// CSRF token of the session, posted with the sign-out form.
    pub csrf: String,
    /// Sign-out POST target, e.g. `/account/logout`.
    pub logout_action: String,
}

/// Dashboard sign-in, step one: username and password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardLoginPage {
    pub csrf: String,
    /// Username to pre-fill after a failed attempt; may be empty.
    pub username: String,
    /// Shown in `#error` (role=alert); `None` hides it.
    pub error: Option<String>,
    /// A neutral message in `#notice` (e.g. "You have signed out."); `None` hides it.
    pub notice: Option<String>,
    /// Form POST target, e.g. `/account/login`.
    pub action: String,
}

/// Dashboard sign-in, step two: the 6-digit security code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardOtpPage {
    pub csrf: String,
    pub error: Option<String>,
    /// Form POST target, e.g. `/account/login/otp`.
    pub action: String,
    /// Where "start again" leads, e.g. `/account/login?restart=1`.
    pub restart_url: String,
}

/// How a consent stands today, in words and as a style modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsentState {
    Active,
    Expired,
    Revoked,
    Refused,
    /// Any other ended state (e.g. ended by the bank after a security problem).
    Ended,
    /// A payment consent that was used and the money went out.
    Paid,
    /// A payment consent that was used but the payment failed or came back.
    NotPaid,
}

impl ConsentState {
    /// The badge text.
    pub fn label(self) -> &'static str {
        match self {
            ConsentState::Active => "Active",
            ConsentState::Expired => "Expired",
            ConsentState::Revoked => "Withdrawn",
            ConsentState::Refused => "Refused",
            ConsentState::Ended => "Ended",
            ConsentState::Paid => "Paid",
            ConsentState::NotPaid => "Not paid",
        }
    }

    /// Machine-readable value (`data-status`), also the CSS modifier.
    pub fn code(self) -> &'static str {
        match self {
            ConsentState::Active => "active",
            ConsentState::Expired => "expired",
            ConsentState::Revoked => "revoked",
            ConsentState::Refused => "refused",
            ConsentState::Ended => "ended",
            ConsentState::Paid => "paid",
            ConsentState::NotPaid => "not-paid",
        }
    }

    pub fn is_active(self) -> bool {
        self == ConsentState::Active
    }

    /// Whether this access was spent (a payment consent used once).
    pub fn is_used(self) -> bool {
        matches!(self, ConsentState::Paid | ConsentState::NotPaid)
    }
}

/// An account shared under a consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedAccount {
    /// E.g. "Everyday Current Account".
    pub name: String,
    /// E.g. "Current account · KES · ending 4821".
    pub detail: String,
}

/// A moment shown to the customer: readable text plus the machine value for `<time>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct When {
    /// E.g. "3 Mar 2026, 14:05 UTC".
    pub text: String,
    /// RFC 3339, for `<time datetime>`.
    pub iso: String,
}

/// One labelled date of a consent ("Given", "Ends"...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateFact {
    pub label: String,
    /// `None` shows `fallback` instead of a date.
    pub when: Option<When>,
    pub fallback: String,
}

/// One line of a consent's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub when: When,
    /// E.g. "Access given".
    pub what: String,
    /// E.g. "You", "Budget Buddy", "Wekeza Bank".
    pub who: String,
    /// Extra words, e.g. "2 accounts shared"; may be empty.
    pub detail: String,
}

/// A payment consent: what is (or was) paid, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFacts {
    /// E.g. "KES 165.88".
    pub amount: String,
    pub payee_name: String,
    /// E.g. "Wekeza account 0100123456789".
    pub payee_account: String,
    pub reference: Option<String>,
    /// The customer's account the money leaves (once chosen).
    pub from_account: Option<SharedAccount>,
    /// The consent's status in words, e.g. "Authorised, not used yet".
    pub consent_status: String,
    /// The payment's status in words, once the provider made it.
    pub payment_status: Option<String>,
    /// When the payment was made.
    pub paid_at: Option<When>,
}

/// A file-payment consent (ADR 0016): the batch its one authorisation covers, and what
/// became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePaymentFacts {
    /// How many payments the file holds.
    pub count: usize,
    /// The control sum with its currency, e.g. "KES 1,250.00".
    pub total: String,
    /// The first few payees, in file order.
    pub first_payees: Vec<crate::FilePayee>,
    /// How many payees are not listed ("and N more"); 0 hides it.
    pub more: usize,
    /// The provider's `FileReference`.
    pub reference: Option<String>,
    /// The customer's account the money leaves (once chosen).
    pub from_account: Option<SharedAccount>,
    /// The consent's status in words.
    pub consent_status: String,
    /// What became of the payments, once the provider made them, e.g. "2 paid, 1 not paid".
    pub payment_status: Option<String>,
    /// When the payments were made.
    pub paid_at: Option<When>,
}

/// One consent as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentCard {
    /// The consent id (shown in small print, `data-consent-id`).
    pub id: String,
    /// A short title, e.g. "Account information" or "Sign-in and profile".
    pub title: String,
    pub state: ConsentState,
    /// Why it ended, in words (e.g. "Withdrawn by you"); `None` when active.
    pub state_note: Option<String>,
    /// Plain OAuth consents: the scopes in words. Empty for account access.
    pub scopes: Vec<ScopeView>,
    /// Account access: the permissions, grouped. Empty for plain OAuth consents.
    pub permission_groups: Vec<PermissionGroup>,
    /// Account access: the accounts picked.
    pub accounts: Vec<SharedAccount>,
    /// Account access: "from 1 Jan 2026 to 24 Nov 2026".
    pub transaction_window: Option<String>,
    pub dates: Vec<DateFact>,
    /// The last time the provider used this access, if the bank recorded it.
    pub last_used: Option<When>,
    pub history: Vec<HistoryEntry>,
    /// The confirmation page for withdrawing, when the consent is active.
    pub revoke_url: Option<String>,
    /// Payment consents: the payment.
    #[serde(default)]
    pub payment: Option<PaymentFacts>,
    /// File-payment consents: the file of payments.
    #[serde(default)]
    pub file_payment: Option<FilePaymentFacts>,
}

/// All consents given to one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConsents {
    /// The provider's registered name.
    pub name: String,
    pub client_id: String,
    /// The provider's registered home page, shown as text.
    pub client_uri: Option<String>,
    /// Same-origin URL of the provider's logo; `None` shows its initial.
    #[serde(default)]
    pub logo_url: Option<String>,
    pub active_count: usize,
    pub consents: Vec<ConsentCard>,
}

/// Kind of banner at the top of the dashboard after an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeKind {
    Success,
    Info,
}

/// A banner shown once (`#notice`, role=status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub message: String,
}

impl Notice {
    pub fn class(&self) -> &'static str {
        match self.kind {
            NoticeKind::Success => "alert alert--success",
            NoticeKind::Info => "alert alert--info",
        }
    }
}

/// The dashboard itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardPage {
    pub signed_in: SignedIn,
    pub notice: Option<Notice>,
    pub active_count: usize,
    pub ended_count: usize,
    pub providers: Vec<ProviderConsents>,
}

/// "Are you sure?" before withdrawing a consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeConfirmPage {
    pub signed_in: SignedIn,
    pub provider_name: String,
    pub consent: ConsentCard,
    /// POST target, e.g. `/account/consents/<id>/revoke`.
    pub action: String,
    /// Where "Keep sharing" leads back to.
    pub cancel_url: String,
}

/// A short dashboard message (not found, signed out, locked...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardMessagePage {
    pub signed_in: Option<SignedIn>,
    pub title: String,
    pub message: String,
    /// Whether the message is an error (`#error`, role=alert) or neutral (`#info`).
    pub is_error: bool,
    /// A link to go on with: (text, href).
    pub link: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "dashboard_login.html")]
struct LoginTemplate<'a> {
    p: &'a DashboardLoginPage,
    signed_in: Option<&'a SignedIn>,
}

#[derive(Template)]
#[template(path = "dashboard_otp.html")]
struct OtpTemplate<'a> {
    p: &'a DashboardOtpPage,
    signed_in: Option<&'a SignedIn>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardTemplate<'a> {
    p: &'a DashboardPage,
    signed_in: Option<&'a SignedIn>,
}

#[derive(Template)]
#[template(path = "dashboard_revoke.html")]
struct RevokeTemplate<'a> {
    p: &'a RevokeConfirmPage,
    signed_in: Option<&'a SignedIn>,
}

#[derive(Template)]
#[template(path = "dashboard_message.html")]
struct MessageTemplate<'a> {
    p: &'a DashboardMessagePage,
    signed_in: Option<&'a SignedIn>,
}

pub fn render_dashboard_login(p: &DashboardLoginPage) -> Result<String, RenderError> {
    Ok(LoginTemplate { p, signed_in: None }.render()?)
}

pub fn render_dashboard_otp(p: &DashboardOtpPage) -> Result<String, RenderError> {
    Ok(OtpTemplate { p, signed_in: None }.render()?)
}

pub fn render_dashboard(p: &DashboardPage) -> Result<String, RenderError> {
    Ok(DashboardTemplate {
        p,
        signed_in: Some(&p.signed_in),
    }
    .render()?)
}

pub fn render_revoke_confirm(p: &RevokeConfirmPage) -> Result<String, RenderError> {
    Ok(RevokeTemplate {
        p,
        signed_in: Some(&p.signed_in),
    }
    .render()?)
}

pub fn render_dashboard_message(p: &DashboardMessagePage) -> Result<String, RenderError> {
    Ok(MessageTemplate {
        p,
        signed_in: p.signed_in.as_ref(),
    }
    .render()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::describe_scope;

    const XSS: &str = "<script>alert(1)</script>";

    fn signed_in() -> SignedIn {
        SignedIn {
            customer_name: "Amina Wanjiru".into(),
            csrf: "csrf-token-123".into(),
            logout_action: "/account/logout".into(),
        }
    }

    fn when(t: &str) -> When {
        When {
            text: t.into(),
            iso: "2026-03-03T14:05:00Z".into(),
        }
    }

    fn card(state: ConsentState) -> ConsentCard {
        ConsentCard {
            id: "aac-1".into(),
            title: "Account information".into(),
            state,
            state_note: None,
            scopes: vec![],
            permission_groups: vec![PermissionGroup {
                title: "Balances".into(),
                items: vec!["The balances of the accounts you pick".into()],
            }],
            accounts: vec![SharedAccount {
                name: XSS.into(),
                detail: "Current account · KES · ending 4821".into(),
            }],
            transaction_window: Some("from 1 Jan 2026 to 24 Nov 2026".into()),
            dates: vec![DateFact {
                label: "Given".into(),
                when: Some(when("3 Mar 2026, 14:05 UTC")),
                fallback: String::new(),
            }],
            last_used: None,
            history: vec![HistoryEntry {
                when: when("3 Mar 2026, 14:05 UTC"),
                what: "Access given".into(),
                who: "You".into(),
                detail: String::new(),
            }],
            revoke_url: state
                .is_active()
                .then(|| "/account/consents/aac-1/revoke".into()),
            payment: None,
            file_payment: None,
        }
    }

    #[test]
    fn dashboard_lists_consents_escaped_without_inline_code() {
        let p = DashboardPage {
            signed_in: signed_in(),
            notice: Some(Notice {
                kind: NoticeKind::Success,
                message: "Done".into(),
            }),
            active_count: 1,
            ended_count: 1,
            providers: vec![ProviderConsents {
                name: "Budget Buddy".into(),
                client_id: "c1".into(),
                client_uri: None,
                logo_url: Some("/clients/c1/logo?v=abc".into()),
                active_count: 1,
                consents: vec![card(ConsentState::Active), {
                    let mut c = card(ConsentState::Revoked);
                    c.scopes = vec![describe_scope("openid")];
                    c
                }],
            }],
        };
        let html = render_dashboard(&p).unwrap();
        assert!(!html.contains(XSS));
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
        assert!(html.contains("Budget Buddy"));
        assert!(html.contains("data-status=\"active\""));
        assert!(html.contains("data-status=\"revoked\""));
        assert!(html.contains("/account/consents/aac-1/revoke"));
        assert!(html.contains("Not recorded"));
        assert!(html.contains("name=\"csrf\" value=\"csrf-token-123\""));
        assert!(!html.contains("<script"));
        assert!(!html.contains("style="));
        assert!(!html.contains("<style"));
    }

    #[test]
    fn payment_cards_show_the_payment_and_a_used_one_has_no_withdraw_link() {
        let pay = |state: ConsentState| {
            let mut c = card(state);
            c.permission_groups.clear();
            c.accounts.clear();
            c.transaction_window = None;
            c.title = "Payment of KES 12.50 to Bob's Shop".into();
            c.payment = Some(PaymentFacts {
                amount: "KES 12.50".into(),
                payee_name: XSS.into(),
                payee_account: "Wekeza account 0100".into(),
                reference: Some("INV-1".into()),
                from_account: Some(SharedAccount {
                    name: "Everyday".into(),
                    detail: "Current account · KES · ending 4821".into(),
                }),
                consent_status: "Used: the payment was made".into(),
                payment_status: state.is_used().then(|| "Paid".into()),
                paid_at: state.is_used().then(|| when("3 Mar 2026, 14:05 UTC")),
            });
            c
        };
        let p = DashboardPage {
            signed_in: signed_in(),
            notice: None,
            active_count: 1,
            ended_count: 1,
            providers: vec![ProviderConsents {
                name: "Budget Buddy".into(),
                client_id: "c1".into(),
                client_uri: None,
                logo_url: None,
                active_count: 1,
                consents: vec![pay(ConsentState::Paid)],
            }],
        };
        let html = render_dashboard(&p).unwrap();
        assert!(!html.contains(XSS));
        assert!(html.contains("data-status=\"paid\""));
        assert!(html.contains("<strong>KES 12.50</strong>"));
        assert!(html.contains("class=\"payment-status\">Paid"));
        assert!(html.contains("INV-1"));
        assert!(html.contains("Everyday"));
        assert!(!html.contains("Withdraw access"), "a used consent is spent");
        assert_eq!(ConsentState::NotPaid.code(), "not-paid");
        assert!(!ConsentState::Paid.is_active() && ConsentState::Paid.is_used());
    }

    #[test]
    fn file_payment_cards_show_the_batch_escaped() {
        let mut c = card(ConsentState::Paid);
        c.permission_groups.clear();
        c.accounts.clear();
        c.transaction_window = None;
        c.title = "3 payments, KES 1,250.00 in total".into();
        c.file_payment = Some(FilePaymentFacts {
            count: 5,
            total: "KES 1,250.00".into(),
            first_payees: vec![crate::FilePayee {
                name: XSS.into(),
                account: "Wekeza account 0100".into(),
                amount: "KES 120.00".into(),
            }],
            more: 4,
            reference: Some("PAYROLL-11".into()),
            from_account: Some(SharedAccount {
                name: "Everyday".into(),
                detail: "Current account · KES · ending 4821".into(),
            }),
            consent_status: "Used: the payments were made".into(),
            payment_status: Some("4 paid, 1 not paid".into()),
            paid_at: Some(when("3 Mar 2026, 14:05 UTC")),
        });
        let p = DashboardPage {
            signed_in: signed_in(),
            notice: None,
            active_count: 0,
            ended_count: 1,
            providers: vec![ProviderConsents {
                name: "Payroll Pro".into(),
                client_id: "c1".into(),
                client_uri: None,
                logo_url: None,
                active_count: 0,
                consents: vec![c],
            }],
        };
        let html = render_dashboard(&p).unwrap();
        assert!(!html.contains(XSS));
        assert!(html.contains("<strong>5</strong> payments in one file"));
        assert!(html.contains("<strong>KES 1,250.00</strong>"));
        assert!(html.contains("and 4 more"));
        assert!(html.contains("PAYROLL-11"));
        assert!(html.contains("class=\"payment-status\">4 paid, 1 not paid"));
        assert!(!html.contains("Withdraw access"), "a used consent is spent");
        assert!(!html.contains("style="));
    }

    #[test]
    fn other_pages_render() {
        let login = render_dashboard_login(&DashboardLoginPage {
            csrf: "c".into(),
            username: "amina".into(),
            error: Some("wrong".into()),
            notice: None,
            action: "/account/login".into(),
        })
        .unwrap();
        assert!(login.contains("id=\"error\""));
        assert!(!login.contains("Sign out"));
        let otp = render_dashboard_otp(&DashboardOtpPage {
            csrf: "c".into(),
            error: None,
            action: "/account/login/otp".into(),
            restart_url: "/account/login?restart=1".into(),
        })
        .unwrap();
        assert!(otp.contains("id=\"otp\""));
        let confirm = render_revoke_confirm(&RevokeConfirmPage {
            signed_in: signed_in(),
            provider_name: "Budget Buddy".into(),
            consent: card(ConsentState::Active),
            action: "/account/consents/aac-1/revoke".into(),
            cancel_url: "/account".into(),
        })
        .unwrap();
        assert!(confirm.contains("id=\"confirm-revoke\""));
        let msg = render_dashboard_message(&DashboardMessagePage {
            signed_in: None,
            title: "Not found".into(),
            message: "No such consent".into(),
            is_error: true,
            link: Some(("Back".into(), "/account".into())),
        })
        .unwrap();
        assert!(msg.contains("id=\"error\""));
    }
}
