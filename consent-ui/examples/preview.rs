//! Writes every page to a directory for visual review, with the stylesheet
//! next to them and the stylesheet link made relative.
//!
//! ```sh
//! cargo run -p consent-ui --example preview -- /tmp/consent-ui-preview
//! ```

use std::error::Error;
use std::path::PathBuf;

use consent_ui::{
    ConsentPage, ErrorPage, InfoPage, LoginPage, OtpPage, STYLESHEET, STYLESHEET_PATH,
    describe_scope, render_consent, render_error, render_info, render_login, render_otp,
};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/consent-ui-preview"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("wekeza.css"), STYLESHEET)?;

    let client = "Budget Buddy";
    let login = LoginPage {
        client_name: client.into(),
        csrf: "preview-csrf-token".into(),
        username: String::new(),
        error: None,
        action: "/login".into(),
    };
    let login_error = LoginPage {
        username: "amina.w".into(),
        error: Some("The username or password you entered is not right. Please try again.".into()),
        ..login.clone()
    };
    let otp = OtpPage {
        client_name: client.into(),
        csrf: "preview-csrf-token".into(),
        error: None,
        action: "/login/otp".into(),
    };
    let otp_error = OtpPage {
        error: Some("That code did not match. Wait for a new code and try again.".into()),
        ..otp.clone()
    };
    let consent = ConsentPage {
        client_name: client.into(),
        client_id: "bb-7f3a9c21-prod".into(),
        logo_url: None,
        client_uri: Some("https://budgetbuddy.example".into()),
        customer_name: "Amina Wanjiru".into(),
        scopes: [
            "openid",
            "profile",
            "accounts",
            "fundsconfirmations",
            "payments",
            "offline_access",
            "com.budgetbuddy.insights",
        ]
        .into_iter()
        .map(describe_scope)
        .collect(),
        expires_text: Some("until 24 Feb 2027".into()),
        redirect_host: "app.budgetbuddy.example".into(),
        csrf: "preview-csrf-token".into(),
        action: "/consent".into(),
        permission_groups: vec![],
        accounts: vec![],
        transaction_window: None,
        error: None,
        payment: None,
        file_payment: None,
    };
    let error = ErrorPage {
        title: "We could not complete this request".into(),
        message: "This sign-in request has expired or was already used. Go back to the app you came from and start again.".into(),
        error_code: Some("invalid_request".into()),
        reference: Some("WKZ-20260224-8F3K".into()),
    };
    let info = InfoPage {
        title: "You are signed in".into(),
        message: "Your decision has been recorded. You can now close this window.".into(),
        detail: Some("If nothing happens, return to Budget Buddy to continue.".into()),
    };

    let pages = [
        ("login", render_login(&login)?),
        ("login-error", render_login(&login_error)?),
        ("otp", render_otp(&otp)?),
        ("otp-error", render_otp(&otp_error)?),
        ("consent", render_consent(&consent)?),
        ("error", render_error(&error)?),
        ("info", render_info(&info)?),
    ];
    for (name, html) in pages {
        let html = html.replace(
            &format!("href=\"{STYLESHEET_PATH}\""),
            "href=\"wekeza.css\"",
        );
        let path = dir.join(format!("{name}.html"));
        std::fs::write(&path, html)?;
        println!("{}", path.display());
    }
    Ok(())
}
