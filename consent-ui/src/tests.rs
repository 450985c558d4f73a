#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const XSS: &str = "<script>alert(1)</script>";
const CSRF: &str = "csrf-Zm9vYmFyLXRva2Vu_123";

fn login(error: Option<&str>) -> LoginPage {
    LoginPage {
        client_name: "Budget Buddy".into(),
        csrf: CSRF.into(),
        username: "amina.w".into(),
        error: error.map(str::to_owned),
        action: "/login".into(),
    }
}

fn otp(error: Option<&str>) -> OtpPage {
    OtpPage {
        client_name: "Budget Buddy".into(),
        csrf: CSRF.into(),
        error: error.map(str::to_owned),
        action: "/login/otp".into(),
    }
}

fn consent() -> ConsentPage {
    ConsentPage {
        client_name: "Budget Buddy".into(),
        client_id: "client-7f3a".into(),
        logo_url: None,
        client_uri: Some("https://budgetbuddy.example".into()),
        customer_name: "Amina Wanjiru".into(),
        scopes: ["openid", "accounts", "payments", "custom:thing"]
            .into_iter()
            .map(describe_scope)
            .collect(),
        expires_text: Some("until 24 Feb 2027".into()),
        redirect_host: "app.budgetbuddy.example".into(),
        csrf: CSRF.into(),
        action: "/consent".into(),
        permission_groups: vec![],
        accounts: vec![],
        transaction_window: None,
        error: None,
        payment: None,
        file_payment: None,
    }
}

fn error_page() -> ErrorPage {
    ErrorPage {
        title: "Something went wrong".into(),
        message: "This sign-in request has expired.".into(),
        error_code: Some("invalid_request".into()),
        reference: Some("REF-0042".into()),
    }
}

fn info_page() -> InfoPage {
    InfoPage {
        title: "Sign-in complete".into(),
        message: "You can close this window.".into(),
        detail: Some("Return to Budget Buddy to continue.".into()),
    }
}

fn all_pages() -> Vec<(&'static str, String)> {
    vec![
        ("login", render_login(&login(None)).unwrap()),
        (
            "login-error",
            render_login(&login(Some("Wrong password"))).unwrap(),
        ),
        ("otp", render_otp(&otp(None)).unwrap()),
        (
            "otp-error",
            render_otp(&otp(Some("Code not accepted"))).unwrap(),
        ),
        ("consent", render_consent(&consent()).unwrap()),
        ("error", render_error(&error_page()).unwrap()),
        ("info", render_info(&info_page()).unwrap()),
    ]
}

/// True if the markup contains something like ` onclick=`.
fn has_event_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        letters > 0 && rest[letters..].starts_with('=')
    })
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn no_script_no_inline_style_and_common_head() {
    for (name, html) in all_pages() {
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<script"), "{name} contains <script");
        assert!(
            !lower.contains(" style="),
            "{name} contains style attribute"
        );
        assert!(!lower.contains("<style"), "{name} contains <style>");
        assert!(
            !lower.contains("javascript:"),
            "{name} contains javascript:"
        );
        assert!(
            !has_event_handler(&lower),
            "{name} contains an event handler"
        );
        assert!(lower.starts_with("<!doctype html>"), "{name} doctype");
        assert!(html.contains("<html lang=\"en\">"), "{name} lang");
        assert!(html.contains("<meta name=\"viewport\""), "{name} viewport");
        assert!(html.contains("<title>"), "{name} title");
        assert!(html.contains("Wekeza Bank"), "{name} wordmark");
        assert!(
            html.contains(&format!(
                "<link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">"
            )),
            "{name} stylesheet link"
        );
        assert!(!lower.contains("http://"), "{name} references http://");
    }
}

#[test]
fn client_name_is_escaped_everywhere() {
    let mut l = login(None);
    l.client_name = XSS.into();
    let mut o = otp(None);
    o.client_name = XSS.into();
    let mut c = consent();
    c.client_name = XSS.into();
    let outputs = [
        render_login(&l).unwrap(),
        render_otp(&o).unwrap(),
        render_consent(&c).unwrap(),
    ];
    for html in outputs {
        assert!(!html.contains(XSS));
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert!(html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
    }
}

#[test]
fn attribute_values_are_escaped() {
    let mut l = login(Some("<b>bad</b>"));
    l.username = "\"><script>x</script>".into();
    l.csrf = "a\"b".into();
    let html = render_login(&l).unwrap();
    assert!(!html.contains("\"><script>"));
    assert!(!html.contains("<b>bad</b>"));
    assert!(html.contains("value=\"a&#34;b\""));

    let mut e = error_page();
    e.message = XSS.into();
    e.title = XSS.into();
    let html = render_error(&e).unwrap();
    assert!(!html.to_ascii_lowercase().contains("<script"));
}

#[test]
fn login_page_fields() {
    let html = render_login(&login(None)).unwrap();
    assert!(html.contains("id=\"client-name\""));
    assert!(html.contains("Budget Buddy"));
    assert!(html.contains("method=\"post\" action=\"/login\""));
    assert!(html.contains(&format!("name=\"csrf\" value=\"{CSRF}\"")));
    assert!(html.contains("type=\"hidden\" name=\"csrf\""));
    assert!(html.contains("id=\"username\" name=\"username\""));
    assert!(html.contains("value=\"amina.w\""));
    assert!(html.contains("autocomplete=\"username\""));
    assert!(html.contains("id=\"password\" name=\"password\" type=\"password\""));
    assert!(html.contains("autocomplete=\"current-password\""));
    assert!(!html.contains("id=\"error\""));
    // Username is pre-filled, so focus goes to the password field.
    assert_eq!(count(&html, " autofocus"), 1);
    assert!(html.contains("autocomplete=\"current-password\" required autofocus"));

    let mut empty = login(None);
    empty.username.clear();
    let html = render_login(&empty).unwrap();
    assert_eq!(count(&html, " autofocus"), 1);
    assert!(
        html.contains("required autofocus aria-invalid") || html.contains("required autofocus>")
    );
}

#[test]
fn login_page_error_box() {
    let html = render_login(&login(Some("Username or password is incorrect."))).unwrap();
    assert_eq!(count(&html, "id=\"error\""), 1);
    assert!(html.contains("Username or password is incorrect."));
    assert!(html.contains("role=\"alert\""));
    assert!(html.contains("aria-invalid=\"true\""));
}

#[test]
fn otp_page_fields() {
    let html = render_otp(&otp(None)).unwrap();
    assert!(html.contains("id=\"client-name\""));
    assert!(html.contains("method=\"post\" action=\"/login/otp\""));
    assert!(html.contains(&format!("name=\"csrf\" value=\"{CSRF}\"")));
    assert!(html.contains("id=\"otp\" name=\"otp\""));
    assert!(html.contains("inputmode=\"numeric\""));
    assert!(html.contains("autocomplete=\"one-time-code\""));
    assert!(html.contains("pattern=\"[0-9]{6}\""));
    assert!(html.contains("maxlength=\"6\""));
    assert!(html.contains(" autofocus"));
    assert!(!html.contains("id=\"error\""));

    let html = render_otp(&otp(Some("That code did not work."))).unwrap();
    assert_eq!(count(&html, "id=\"error\""), 1);
    assert!(html.contains("That code did not work."));
}

#[test]
fn consent_page_content() {
    let page = consent();
    let html = render_consent(&page).unwrap();
    assert!(html.contains("id=\"client-name\""));
    assert!(html.contains("Budget Buddy"));
    assert!(html.contains("client-7f3a"));
    assert!(html.contains("https://budgetbuddy.example"));
    assert!(!html.contains("href=\"https://budgetbuddy.example"));
    assert!(html.contains("Amina Wanjiru"));
    assert!(html.contains("until 24 Feb 2027"));
    assert!(html.contains("app.budgetbuddy.example"));
    assert!(html.contains("withdraw this access"));
    assert!(html.contains("method=\"post\" action=\"/consent\""));
    assert!(html.contains(&format!("name=\"csrf\" value=\"{CSRF}\"")));
    assert!(!html.contains("id=\"error\""));

    // Scope list with every scope's wording.
    assert!(html.contains("<ul id=\"consent-scopes\""));
    for scope in &page.scopes {
        assert!(html.contains(&scope.title), "missing {}", scope.title);
        assert!(html.contains(&scope.description));
    }
    assert_eq!(count(&html, "<li class=\"scope\">"), page.scopes.len());

    // Exactly one form holding both decisions.
    assert_eq!(count(&html, "<form"), 1);
    let form_start = html.find("<form").unwrap();
    let form_end = html.find("</form>").unwrap();
    let form = &html[form_start..form_end];
    assert!(form.contains("id=\"approve\""));
    assert!(form.contains("id=\"deny\""));
    assert!(form.contains("name=\"decision\" value=\"approve\">Allow</button>"));
    assert!(form.contains("name=\"decision\" value=\"deny\">Deny</button>"));
}

#[test]
fn consent_page_without_optional_fields() {
    let mut page = consent();
    page.client_uri = None;
    page.expires_text = None;
    page.scopes.clear();
    let html = render_consent(&page).unwrap();
    assert!(!html.contains("Website:"));
    assert!(html.contains("No end date has been set"));
    assert!(html.contains("id=\"consent-scopes\""));
    assert!(html.contains("id=\"approve\""));
}

#[test]
fn error_page_content() {
    let html = render_error(&error_page()).unwrap();
    assert_eq!(count(&html, "id=\"error\""), 1);
    assert!(html.contains("<title>Something went wrong"));
    assert!(html.contains("This sign-in request has expired."));
    assert!(html.contains("invalid_request"));
    assert!(html.contains("REF-0042"));

    let html = render_error(&ErrorPage {
        error_code: None,
        reference: None,
        ..error_page()
    })
    .unwrap();
    assert!(!html.contains("<dl"));
    assert!(!html.contains("Reference"));
}

#[test]
fn info_page_content() {
    let html = render_info(&info_page()).unwrap();
    assert!(html.contains("<title>Sign-in complete"));
    assert!(html.contains("You can close this window."));
    assert!(html.contains("Return to Budget Buddy to continue."));
    assert!(!html.contains("id=\"error\""));
}

#[test]
fn known_and_unknown_scopes() {
    for s in [
        "openid",
        "profile",
        "accounts",
        "payments",
        "fundsconfirmations",
        "offline_access",
    ] {
        let v = describe_scope(s);
        assert_eq!(v.name, s);
        assert_ne!(v.title, s, "{s} should have human wording");
        assert!(!v.description.is_empty());
    }
    let v = describe_scope("telemetry:write");
    assert_eq!(v.name, "telemetry:write");
    assert_eq!(v.title, "telemetry:write");
    assert!(v.description.contains("additional permission"));
    assert!(v.description.contains("provider"));
    // Scope values are case-sensitive.
    assert_eq!(describe_scope("Accounts").title, "Accounts");
}

#[test]
fn stylesheet_is_self_contained() {
    assert!(STYLESHEET.contains(".card"));
    assert!(STYLESHEET.contains(":focus-visible"));
    assert!(!STYLESHEET.contains("@import"));
    assert!(!STYLESHEET.contains("url("));
    assert!(!STYLESHEET.contains("http"));
    assert_eq!(STYLESHEET_PATH, "/assets/wekeza.css");
}

#[test]
fn render_error_display() {
    let e = RenderError("boom".into());
    assert_eq!(e.to_string(), "failed to render page: boom");
}

#[test]
fn open_banking_consent_lists_permissions_and_account_checkboxes() {
    let page = ConsentPage {
        permission_groups: vec![PermissionGroup {
            title: "Balances".into(),
            items: vec!["The balances of the accounts you pick".into()],
        }],
        accounts: vec![AccountChoice {
            id: "acc-<1>".into(),
            name: "Everyday".into(),
            detail: "Current account · KES".into(),
            checked: false,
        }],
        transaction_window: Some("from 1 Jan 2026 to 24 Nov 2026".into()),
        error: Some("Pick at least one account.".into()),
        ..consent()
    };
    let html = render_consent(&page).expect("renders");
    assert!(html.contains("id=\"consent-permissions\""));
    assert!(html.contains("The balances of the accounts you pick"));
    assert!(
        html.contains("id=\"account-1\" name=\"account\" value=\"acc-&#60;1&#62;\""),
        "{html}"
    );
    assert!(html.contains("id=\"transaction-window\""));
    assert!(html.contains("id=\"error\""));
}

#[test]
fn payment_consent_shows_amount_payee_reference_and_debtor_choices() {
    let page = ConsentPage {
        payment: Some(PaymentSummary {
            amount: "KES 165.88".into(),
            payee_name: "ACME <Inc>".into(),
            payee_account: "Account number 0100123456789".into(),
            reference: Some("FRESCO-101".into()),
            from_account: None,
            from_choices: vec![AccountChoice {
                id: "acc-1".into(),
                name: "Everyday".into(),
                detail: "Current account · KES".into(),
                checked: false,
            }],
        }),
        ..consent()
    };
    let html = render_consent(&page).expect("renders");
    assert!(html.contains("id=\"payment-amount\"><strong>KES 165.88</strong>"));
    assert!(
        html.contains("id=\"payment-payee\">ACME &#60;Inc&#62;</span>"),
        "escaped"
    );
    assert!(html.contains("0100123456789"));
    assert!(html.contains("id=\"payment-reference\">FRESCO-101"));
    assert!(html.contains("type=\"radio\" id=\"debtor-1\" name=\"account\" value=\"acc-1\""));
    assert!(!html.contains("id=\"payment-from\""));
    let fixed = ConsentPage {
        payment: Some(PaymentSummary {
            from_account: Some("Everyday · ending 6789".into()),
            from_choices: vec![],
            ..page.payment.clone().expect("payment")
        }),
        ..consent()
    };
    let html = render_consent(&fixed).expect("renders");
    assert!(html.contains("id=\"payment-from\">Everyday · ending 6789"));
    assert!(!html.contains("type=\"radio\""));
}

#[test]
fn consent_page_shows_the_served_logo_or_the_initial() {
    let mut c = consent();
    let html = render_consent(&c).unwrap();
    assert!(!html.contains("id=\"client-logo\""));
    assert!(html.contains("id=\"client-initial\""));
    assert!(html.contains(">B</span>"));
    c.logo_url = Some("/clients/client-7f3a/logo?v=0123456789abcdef".into());
    let html = render_consent(&c).unwrap();
    assert!(html.contains(r#"src="/clients/client-7f3a/logo?v=0123456789abcdef""#));
    assert!(!html.contains("id=\"client-initial\""));
    // A hostile value cannot leave the attribute.
    c.logo_url = Some(format!("x\"{XSS}"));
    let html = render_consent(&c).unwrap();
    assert!(!html.contains(XSS));
}

#[test]
fn initial_is_the_first_letter_or_digit() {
    assert_eq!(initial("budget buddy"), "B");
    assert_eq!(initial("  42 Pay"), "4");
    assert_eq!(initial("ñandú"), "Ñ");
    assert_eq!(initial("!!!"), "?");
}

#[test]
fn file_payment_consent_shows_the_batch_and_debtor_choices() {
    let page = ConsentPage {
        file_payment: Some(FilePaymentSummary {
            count: 5,
            total: "KES 1,250.00".into(),
            first_payees: vec![FilePayee {
                name: "Jane <Doe>".into(),
                account: "Wekeza account 0100123".into(),
                amount: "KES 250.00".into(),
            }],
            more: 4,
            reference: Some("PAYROLL-NOV".into()),
            from_account: None,
            from_choices: vec![AccountChoice {
                id: "acc-1".into(),
                name: "Everyday".into(),
                detail: "Current account · KES".into(),
                checked: true,
            }],
        }),
        ..consent()
    };
    let html = render_consent(&page).expect("renders");
    assert!(
        html.contains("id=\"file-payment-count\">5</strong>"),
        "{html}"
    );
    assert!(html.contains("id=\"file-payment-total\"><strong>KES 1,250.00</strong>"));
    assert!(html.contains("Jane &#60;Doe&#62;"), "escaped");
    assert!(html.contains("id=\"file-payment-more\">and 4 more"));
    assert!(html.contains("id=\"file-payment-reference\">PAYROLL-NOV"));
    assert!(
        html.contains(
            "type=\"radio\" id=\"file-debtor-1\" name=\"account\" value=\"acc-1\" checked"
        ),
        "{html}"
    );
    let fixed = ConsentPage {
        file_payment: Some(FilePaymentSummary {
            from_account: Some("Everyday · ending 6789".into()),
            from_choices: vec![],
            more: 0,
            ..page.file_payment.clone().expect("file payment")
        }),
        ..consent()
    };
    let html = render_consent(&fixed).expect("renders");
    assert!(html.contains("id=\"file-payment-from\">Everyday · ending 6789"));
    assert!(!html.contains("type=\"radio\""));
    assert!(!html.contains("file-payment-more"));
}
