//! Reading the bank's pages the way a no-JS browser does: the first form of a page and
//! what an error page says.

use super::ctx::Front;

const OAUTH_ERRORS: [&str; 12] = [
    "invalid_request_uri",
    "invalid_request_object",
    "invalid_request",
    "invalid_client",
    "invalid_scope",
    "unauthorized_client",
    "unsupported_response_type",
    "access_denied",
    "login_required",
    "server_error",
    "temporarily_unavailable",
    "session_expired",
];

pub fn error_page(status: u16, html: &str) -> Front {
    let title = between(html, "<h1>", "</h1>")
        .or_else(|| between(html, "<title>", "</title>"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    // Prefer a code shown in <code>; else any OAuth error name on the page.
    let mut error = None;
    let mut rest = html;
    while let Some(i) = rest.find("<code>") {
        rest = &rest[i + 6..];
        if let Some(c) = between(rest, "", "</code>")
            && OAUTH_ERRORS.contains(&c.trim())
        {
            error = Some(c.trim().to_owned());
            break;
        }
    }
    if error.is_none() {
        error = OAUTH_ERRORS
            .iter()
            .find(|e| html.contains(*e))
            .map(|e| (*e).to_owned());
    }
    Front::Page {
        status,
        error,
        title,
    }
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> Option<&'a str> {
    let i = s.find(a)? + a.len();
    let j = s[i..].find(b)? + i;
    Some(&s[i..j])
}

/// The first HTML form of a page, enough to fill it like a browser.
#[derive(Debug, Default)]
pub struct Form {
    pub action: String,
    pub hidden: Vec<(String, String)>,
    pub inputs: Vec<String>,
    pub buttons: Vec<(String, String)>,
    /// Checkboxes as (name, value), e.g. the accounts offered on a consent page.
    pub checkboxes: Vec<(String, String)>,
}

impl Form {
    pub fn parse(html: &str) -> Option<Form> {
        let start = html.find("<form")?;
        let body = &html[start..];
        let end = body.find("</form>").unwrap_or(body.len());
        let body = &body[..end];
        let open = &body[..body.find('>')?];
        let mut f = Form {
            action: attr(open, "action").unwrap_or_default(),
            ..Form::default()
        };
        for (tag, _) in body.match_indices("<input") {
            let t = &body[tag..];
            let t = &t[..t.find('>').unwrap_or(t.len())];
            let name = attr(t, "name").unwrap_or_default();
            if name.is_empty() {
                continue;
            }
            if attr(t, "type").as_deref() == Some("hidden") {
                f.hidden.push((name, attr(t, "value").unwrap_or_default()));
            } else if attr(t, "type").as_deref() == Some("checkbox") {
                f.checkboxes
                    .push((name, attr(t, "value").unwrap_or_else(|| "on".into())));
            } else {
                f.inputs.push(name);
            }
        }
        for (tag, _) in body.match_indices("<button") {
            let t = &body[tag..];
            let t = &t[..t.find('>').unwrap_or(t.len())];
            if let Some(n) = attr(t, "name") {
                f.buttons.push((n, attr(t, "value").unwrap_or_default()));
            }
        }
        Some(f)
    }

    pub fn has(&self, name: &str) -> bool {
        self.inputs.iter().any(|n| n == name)
    }

    /// The visible text field other than password/otp (the username field).
    pub fn text_name(&self, fallback: &str) -> String {
        self.inputs
            .iter()
            .find(|n| *n != "password" && *n != "otp")
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let i = tag.find(&pat)? + pat.len();
    let j = tag[i..].find('"')? + i;
    Some(
        tag[i..j]
            .replace("&amp;", "&")
            .replace("&#x2F;", "/")
            .replace("&#47;", "/")
            .replace("&quot;", "\""),
    )
}
