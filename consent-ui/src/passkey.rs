//! Passkey (WebAuthn) pages: signing in with a passkey (username first, then the
//! browser's passkey prompt) and adding, renaming and removing passkeys after a sign-in.
//!
//! The ceremony itself needs JavaScript: [`PASSKEY_SCRIPT`], served at
//! [`PASSKEY_SCRIPT_PATH`] (same origin, so the pages need only `script-src 'self'`).
//! The server's challenge options travel in a `data-options` attribute of the ceremony
//! form (HTML-escaped by askama, decoded by the browser); the script fills the hidden
//! `credential` field with the authenticator's answer as JSON and submits the form.
//! Without JavaScript the pages explain that the password sign-in remains available.

use askama::Template;
use serde::{Deserialize, Serialize};

use crate::RenderError;

/// The passkey ceremony script, to be served at [`PASSKEY_SCRIPT_PATH`].
pub const PASSKEY_SCRIPT: &str = include_str!("../assets/passkey.js");

/// Path at which the passkey pages expect [`PASSKEY_SCRIPT`]
/// (`text/javascript; charset=utf-8`).
pub const PASSKEY_SCRIPT_PATH: &str = "/assets/passkey.js";

/// Sign in with a passkey. Without `options` it asks for the username; with them it
/// runs the browser's passkey prompt (`navigator.credentials.get`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeySignInPage {
    pub client_name: String,
    /// CSRF token, echoed in a hidden `csrf` field of every form.
    pub csrf: String,
    /// Username to pre-fill; shown as text while the prompt runs.
    pub username: String,
    /// Message shown in the `#error` box.
    pub error: Option<String>,
    /// `{"publicKey": {...}}` request options as JSON; `None` shows the username form.
    pub options: Option<String>,
    /// POST target of the username form, e.g. `/login/passkey`.
    pub start_action: String,
    /// POST target of the ceremony form, e.g. `/login/passkey/finish`.
    pub finish_action: String,
    /// The password sign-in page, e.g. `/login`.
    pub password_href: String,
}

/// One stored passkey as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyView {
    /// Credential id (base64url), posted back as `id` by the rename and remove forms.
    pub id: String,
    pub name: String,
    /// E.g. "3 Mar 2026".
    pub created: String,
    /// E.g. "3 Mar 2026, 14:05 UTC"; `None`: never used.
    pub last_used: Option<String>,
}

/// Add a passkey (after a sign-in) and manage the existing ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyManagePage {
    pub client_name: String,
    pub customer_name: String,
    pub csrf: String,
    /// `{"publicKey": {...}}` creation options as JSON (`navigator.credentials.create`).
    pub options: String,
    /// Suggested name for the new passkey, e.g. "Passkey added 3 Mar 2026".
    pub default_name: String,
    pub passkeys: Vec<PasskeyView>,
    /// Message shown in the `#error` box.
    pub error: Option<String>,
    /// Confirmation shown in the `#notice` box (e.g. "Passkey added.").
    pub notice: Option<String>,
    /// POST target of the add form (fields `csrf`, `name`, `credential`).
    pub add_action: String,
    /// POST target of the rename forms (fields `csrf`, `id`, `name`).
    pub rename_action: String,
    /// POST target of the remove forms (fields `csrf`, `id`).
    pub remove_action: String,
    /// Where the customer continues (the consent page).
    pub continue_href: String,
}

#[derive(Template)]
#[template(path = "passkey_signin.html")]
struct SignInTemplate<'a> {
    p: &'a PasskeySignInPage,
}

#[derive(Template)]
#[template(path = "passkey_manage.html")]
struct ManageTemplate<'a> {
    p: &'a PasskeyManagePage,
}

/// Render the passkey sign-in page.
pub fn render_passkey_signin(p: &PasskeySignInPage) -> Result<String, RenderError> {
    Ok(SignInTemplate { p }.render()?)
}

/// Render the add/manage passkeys page.
pub fn render_passkey_manage(p: &PasskeyManagePage) -> Result<String, RenderError> {
    Ok(ManageTemplate { p }.render()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn signin(options: Option<&str>) -> PasskeySignInPage {
        PasskeySignInPage {
            client_name: "Budget <Buddy>".into(),
            csrf: "tok".into(),
            username: "alice".into(),
            error: None,
            options: options.map(str::to_owned),
            start_action: "/login/passkey".into(),
            finish_action: "/login/passkey/finish".into(),
            password_href: "/login".into(),
        }
    }

    #[test]
    fn signin_asks_for_the_username_then_runs_the_prompt() {
        let html = render_passkey_signin(&signin(None)).unwrap();
        assert!(html.contains(r#"action="/login/passkey""#));
        assert!(html.contains(r#"id="username""#));
        assert!(!html.contains("passkey-ceremony"));
        assert!(html.contains("Budget &#60;Buddy&#62;") || html.contains("Budget &lt;Buddy&gt;"));

        let html =
            render_passkey_signin(&signin(Some(r#"{"publicKey":{"challenge":"a\"<"}}"#))).unwrap();
        assert!(html.contains(r#"id="passkey-ceremony""#));
        assert!(html.contains(r#"data-mode="get""#));
        assert!(html.contains(PASSKEY_SCRIPT_PATH));
        // The options are attribute-escaped, never raw.
        assert!(!html.contains(r#""challenge":"a\"<""#));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn manage_lists_passkeys_with_rename_and_remove() {
        let p = PasskeyManagePage {
            client_name: "Budget Buddy".into(),
            customer_name: "Alice".into(),
            csrf: "tok".into(),
            options: "{}".into(),
            default_name: "Passkey added 1 Jan 2026".into(),
            passkeys: vec![PasskeyView {
                id: "cred-1".into(),
                name: "Laptop".into(),
                created: "1 Jan 2026".into(),
                last_used: None,
            }],
            error: None,
            notice: Some("Passkey added.".into()),
            add_action: "/passkey".into(),
            rename_action: "/passkey/rename".into(),
            remove_action: "/passkey/remove".into(),
            continue_href: "/consent".into(),
        };
        let html = render_passkey_manage(&p).unwrap();
        assert!(html.contains(r#"data-mode="create""#));
        assert!(html.contains("Laptop"));
        assert!(html.contains(r#"value="cred-1""#));
        assert!(html.contains(r#"id="notice""#));
        assert!(html.contains("Never used"));
        assert!(html.contains(r#"href="/consent""#));
    }
}
