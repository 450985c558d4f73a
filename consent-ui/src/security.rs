//! The dashboard's security page (`/account/security`): the authenticator app (TOTP)
//! and its enrolment with a QR code, recovery codes (shown once), passkeys, and the
//! customer's recent sign-in activity. Plain page models, no I/O, no inline script or
//! style; the QR code is inline SVG markup produced by the server from the code's
//! modules (it holds no customer text).

use askama::Template;
use serde::{Deserialize, Serialize};

use crate::RenderError;
use crate::dashboard::{Notice, SignedIn, When};

/// One passkey row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: Option<String>,
}

/// One sign-in event, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRow {
    pub when: When,
    /// E.g. "Security code from your app".
    pub method: String,
    /// E.g. "Signed in", "Refused".
    pub outcome: String,
    pub ok: bool,
    /// E.g. "Dashboard", "For Budget Buddy".
    pub place: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityPage {
    pub signed_in: SignedIn,
    pub notice: Option<Notice>,
    /// Starts a new authenticator enrolment (POST).
    pub totp_start_action: String,
    pub recovery_left: i64,
    /// Regenerates the recovery codes (POST).
    pub recovery_action: String,
    pub passkeys: Vec<PasskeyRow>,
    pub passkey_rename_action: String,
    pub passkey_remove_action: String,
    pub activity: Vec<ActivityRow>,
    pub back_url: String,
}

/// Enrolment: the QR code, the secret for typing in, and the confirmation form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolPage {
    pub signed_in: SignedIn,
    /// Trusted SVG markup (see the module comment).
    pub qr_svg: String,
    /// The base32 secret in groups of four, for manual entry.
    pub secret_text: String,
    /// The account name the app will show.
    pub account: String,
    pub error: Option<String>,
    pub confirm_action: String,
    pub cancel_url: String,
}

/// New recovery codes, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryCodesPage {
    pub signed_in: SignedIn,
    pub title: String,
    pub intro: String,
    pub codes: Vec<String>,
    pub done_url: String,
}

/// Dashboard sign-in with a passkey: the username form, then the ceremony form that
/// `passkey.js` drives (`data-options` set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardPasskeyPage {
    pub csrf: String,
    pub username: String,
    pub error: Option<String>,
    pub options: Option<String>,
    pub start_action: String,
    pub finish_action: String,
    pub password_href: String,
}

#[derive(Template)]
#[template(path = "dashboard_passkey.html")]
struct DashPasskeyTemplate<'a> {
    p: &'a DashboardPasskeyPage,
    signed_in: Option<&'a SignedIn>,
}

pub fn render_dashboard_passkey(p: &DashboardPasskeyPage) -> Result<String, RenderError> {
    Ok(DashPasskeyTemplate { p, signed_in: None }.render()?)
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityTemplate<'a> {
    p: &'a SecurityPage,
    signed_in: Option<&'a SignedIn>,
}

#[derive(Template)]
#[template(path = "totp_enrol.html")]
struct EnrolTemplate<'a> {
    p: &'a TotpEnrolPage,
    signed_in: Option<&'a SignedIn>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct CodesTemplate<'a> {
    p: &'a RecoveryCodesPage,
    signed_in: Option<&'a SignedIn>,
}

pub fn render_security(p: &SecurityPage) -> Result<String, RenderError> {
    Ok(SecurityTemplate {
        p,
        signed_in: Some(&p.signed_in),
    }
    .render()?)
}

pub fn render_totp_enrol(p: &TotpEnrolPage) -> Result<String, RenderError> {
    Ok(EnrolTemplate {
        p,
        signed_in: Some(&p.signed_in),
    }
    .render()?)
}

pub fn render_recovery_codes(p: &RecoveryCodesPage) -> Result<String, RenderError> {
    Ok(CodesTemplate {
        p,
        signed_in: Some(&p.signed_in),
    }
    .render()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const XSS: &str = "<script>alert(1)</script>";

    fn who() -> SignedIn {
        SignedIn {
            customer_name: XSS.into(),
            csrf: "csrf-1".into(),
            logout_action: "/account/logout".into(),
        }
    }

    #[test]
    fn pages_escape_and_carry_no_inline_code() {
        let sec = render_security(&SecurityPage {
            signed_in: who(),
            notice: None,
            totp_start_action: "/account/totp/start".into(),
            recovery_left: 7,
            recovery_action: "/account/recovery-codes".into(),
            passkeys: vec![PasskeyRow {
                id: "cred-1".into(),
                name: XSS.into(),
                created: "1 Jan 2026".into(),
                last_used: None,
            }],
            passkey_rename_action: "/account/passkeys/rename".into(),
            passkey_remove_action: "/account/passkeys/remove".into(),
            activity: vec![ActivityRow {
                when: When {
                    text: "1 Jan 2026, 10:00 UTC".into(),
                    iso: "2026-01-01T10:00:00Z".into(),
                },
                method: "Password".into(),
                outcome: "Refused".into(),
                ok: false,
                place: XSS.into(),
            }],
            back_url: "/account".into(),
        })
        .unwrap();
        let enrol = render_totp_enrol(&TotpEnrolPage {
            signed_in: who(),
            qr_svg: "<svg></svg>".into(),
            secret_text: "ABCD EFGH".into(),
            account: XSS.into(),
            error: Some("wrong".into()),
            confirm_action: "/account/totp/confirm".into(),
            cancel_url: "/account/security".into(),
        })
        .unwrap();
        let codes = render_recovery_codes(&RecoveryCodesPage {
            signed_in: who(),
            title: "Your recovery codes".into(),
            intro: "Keep them safe".into(),
            codes: vec!["abcd-efgh-ijkl-mnop".into()],
            done_url: "/account/security".into(),
        })
        .unwrap();
        for html in [&sec, &enrol, &codes] {
            assert!(!html.contains(XSS));
            assert!(!html.contains("<script"));
            assert!(!html.contains("style="));
        }
        assert!(sec.contains("id=\"recovery-left\"") && sec.contains(">7<"));
        assert!(sec.contains("name=\"csrf\" value=\"csrf-1\""));
        assert!(enrol.contains("<svg></svg>") && enrol.contains("id=\"totp-secret\""));
        assert!(enrol.contains("id=\"error\""));
        assert!(codes.contains("abcd-efgh-ijkl-mnop"));
    }
}
