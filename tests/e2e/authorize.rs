//! The authorization endpoint and the customer's interaction (FAPI 2.0 §5.3.2.2), and the
//! authorization code at the token endpoint: every rule shown refused, each test with a
//! positive control so it fails if the rule is removed.

use authz_server::clock::Clock;
use fapi_conformance::Pkce;
use fapi_conformance::browser::{Customer, Page, param};
use fapi_conformance::tpp::{Auth, Reply, Tpp, enc};
use serde_json::json;
use wekeza_tests::{TestPlatform, jwt_claims};

const EVIL: &str = "https://evil.example/cb";

async fn push(tpp: &Tpp, pkce: &Pkce, state: &str) -> String {
    let r = tpp.par(pkce, state, "n-456", &[]).await.unwrap();
    assert_eq!(r.status, 201, "PAR failed: {:?}", r.body);
    r.str("request_uri").unwrap().to_owned()
}

fn authorization_endpoint(tpp: &Tpp) -> String {
    tpp.discovery["authorization_endpoint"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn snippet(page: &Page) -> String {
    page.html.chars().take(400).collect()
}

/// An HTML error page shown to the customer: exact status, never a redirect.
#[track_caller]
fn assert_error_page(page: &Page, status: u16, code: &str) {
    assert_eq!(page.status.as_u16(), status, "{}", snippet(page));
    assert_eq!(
        page.location, None,
        "an error page must not redirect anywhere"
    );
    assert!(
        page.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/html")),
        "error pages are HTML"
    );
    assert!(page.html.contains("id=\"error\""), "{}", snippet(page));
    assert!(
        page.html.contains(&format!("<code>{code}</code>")),
        "expected error code {code}: {}",
        snippet(page)
    );
}

#[track_caller]
fn assert_login_page(page: &Page) {
    assert_eq!(page.status.as_u16(), 200, "{}", snippet(page));
    assert!(page.csrf().is_some(), "login page has a csrf field");
    assert!(page.html.contains("name=\"password\""), "{}", snippet(page));
}

#[track_caller]
fn assert_redirect_to(page: &Page, location: &str) {
    assert_eq!(page.status.as_u16(), 303, "{}", snippet(page));
    assert_eq!(page.location.as_deref(), Some(location));
}

/// The 303 back to the client, parsed.
#[track_caller]
fn back_to_client(page: &Page, tpp: &Tpp) -> url::Url {
    assert_eq!(page.status.as_u16(), 303, "{}", snippet(page));
    let loc = page.location.as_deref().expect("Location");
    assert!(
        loc.starts_with(&format!("{}?", tpp.redirect_uri)),
        "redirects only to the registered redirect URI: {loc}"
    );
    url::Url::parse(loc).unwrap()
}

async fn password(p: &TestPlatform, c: &Customer, csrf: &str, pw: &str) -> Page {
    c.post(
        "/login",
        &[
            ("csrf", csrf),
            ("username", &p.kit.customer.username),
            ("password", pw),
        ],
    )
    .await
    .unwrap()
}

async fn otp(c: &Customer, csrf: &str, code: &str) -> Page {
    c.post("/login/otp", &[("csrf", csrf), ("otp", code)])
        .await
        .unwrap()
}

async fn decide(c: &Customer, csrf: &str, decision: &str) -> Page {
    c.post("/consent", &[("csrf", csrf), ("decision", decision)])
        .await
        .unwrap()
}

/// Open the request and sign in with both factors; returns the agent and the consent page.
async fn signed_in(p: &TestPlatform, url: &str) -> (Customer, Page) {
    let c = p.customer();
    let login = c.open(url).await.unwrap();
    assert_login_page(&login);
    let code = p.fresh_otp();
    let k = &p.kit.customer;
    let consent = c
        .sign_in(&login, &k.username, &k.password, &code)
        .await
        .unwrap();
    assert_eq!(consent.status.as_u16(), 200, "{}", snippet(&consent));
    (c, consent)
}

/// A token request authenticated at the server's (possibly advanced) time.
async fn token(p: &TestPlatform, tpp: &Tpp, params: &[(&str, &str)]) -> Reply {
    let mut form = tpp.form(params);
    if matches!(tpp.auth, Auth::PrivateKeyJwt(_)) {
        let t = p.clock.now();
        let a = tpp.assertion_with(json!({"iat": t, "exp": t + 60}));
        for (k, v) in form.iter_mut() {
            if k == "client_assertion" {
                *v = a.clone();
            }
        }
    }
    tpp.post_form(&tpp.endpoint("token_endpoint"), &form, true)
        .await
        .unwrap()
}

async fn exchange(p: &TestPlatform, tpp: &Tpp, code: &str, verifier: Option<&str>) -> Reply {
    let mut params = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", tpp.redirect_uri.as_str()),
    ];
    if let Some(v) = verifier {
        params.push(("code_verifier", v));
    }
    token(p, tpp, &params).await
}

#[track_caller]
fn assert_oauth_error(r: &Reply, status: u16, error: &str) {
    assert_eq!(r.status.as_u16(), status, "{:?}", r.body);
    assert_eq!(r.error(), error, "{:?}", r.body);
}

async fn code_for(p: &TestPlatform, tpp: &Tpp, pkce: &Pkce) -> String {
    let back = p.authorize(tpp, pkce, true).await;
    param(&back, "code").expect("code")
}

async fn introspect(tpp: &Tpp, token: &str) -> Reply {
    tpp.post_form(
        &tpp.endpoint("introspection_endpoint"),
        &tpp.form(&[("token", token)]),
        true,
    )
    .await
    .unwrap()
}

// ---------------------------------------------------------------- authorization endpoint

#[tokio::test]
async fn authorize_rejects_requests_without_par() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let query = format!(
        "client_id={}&response_type=code&redirect_uri={}&scope={}&code_challenge={}&code_challenge_method=S256&state=st&nonce=n",
        enc(&tpp.client_id),
        enc(&tpp.redirect_uri),
        enc(&tpp.scope),
        pkce.challenge
    );
    let c = p.customer();
    let page = c
        .get(&format!("{}?{query}", authorization_endpoint(tpp)))
        .await
        .unwrap();
    assert_error_page(&page, 400, "invalid_request");
    assert!(page.headers.get("set-cookie").is_none(), "no interaction");
    // The same parameters as a form POST.
    let page = post_authorize(&c, tpp, &query).await;
    assert_error_page(&page, 400, "invalid_request");
    p.finish().await;
}

/// POST /authorize with the parameters of a urlencoded query string as the form body.
async fn post_authorize(c: &Customer, tpp: &Tpp, query: &str) -> Page {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    c.post(&authorization_endpoint(tpp), &refs).await.unwrap()
}

#[tokio::test]
async fn authorize_rejects_an_unknown_request_uri() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let real = push(tpp, &Pkce::new(), "st").await;
    assert_login_page(&p.customer().open(&tpp.authorize_url(&real)).await.unwrap());
    let mut tampered = real.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for ru in [
        format!(
            "urn:ietf:params:oauth:request_uri:{}",
            fapi_conformance::tpp::random(32)
        ),
        tampered,
        "https://evil.example/request.jwt".to_owned(),
        String::new(),
    ] {
        let page = p.customer().get(&tpp.authorize_url(&ru)).await.unwrap();
        assert_error_page(&page, 400, "invalid_request_uri");
    }
    p.finish().await;
}

#[tokio::test]
async fn authorize_binds_request_uri_to_the_client_that_pushed_it() {
    let p = TestPlatform::spawn().await;
    let ru = push(&p.pkjwt, &Pkce::new(), "st").await;
    let page = p.customer().get(&p.mtls.authorize_url(&ru)).await.unwrap();
    assert_error_page(&page, 400, "invalid_request_uri");
    assert!(page.headers.get("set-cookie").is_none());
    // Control: the client that pushed it can use it.
    assert_login_page(
        &p.customer()
            .open(&p.pkjwt.authorize_url(&ru))
            .await
            .unwrap(),
    );
    p.finish().await;
}

#[tokio::test]
async fn authorize_rejects_an_expired_request_uri() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let r = tpp.par(&Pkce::new(), "st", "n", &[]).await.unwrap();
    assert_eq!(r.status, 201);
    let ru = r.str("request_uri").unwrap().to_owned();
    let expires_in = r.body["expires_in"].as_i64().unwrap();
    let url = tpp.authorize_url(&ru);
    assert_login_page(&p.customer().open(&url).await.unwrap());
    p.clock.advance(expires_in - 5);
    assert_login_page(&p.customer().open(&url).await.unwrap());
    p.clock.advance(6);
    let page = p.customer().get(&url).await.unwrap();
    assert_error_page(&page, 400, "invalid_request_uri");
    p.finish().await;
}

#[tokio::test]
async fn request_uri_is_reusable_until_the_customer_decides() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let ru = push(tpp, &Pkce::new(), "st").await;
    let url = tpp.authorize_url(&ru);
    // Link preloaders and reloads: the same request_uri opens again before completion.
    let first = p.customer();
    assert_login_page(&first.open(&url).await.unwrap());
    assert_login_page(&first.open(&url).await.unwrap());
    assert_login_page(&p.customer().open(&url).await.unwrap());
    // The customer completes the authorization…
    let (c, consent) = signed_in(&p, &url).await;
    let back = back_to_client(&decide(&c, &consent.csrf().unwrap(), "approve").await, tpp);
    assert!(param(&back, "code").is_some());
    // …after which the request_uri is spent.
    let page = p.customer().get(&url).await.unwrap();
    assert_error_page(&page, 400, "invalid_request_uri");
    p.finish().await;
}

#[tokio::test]
async fn request_uri_allows_only_one_decision() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let ru = push(tpp, &pkce, "st").await;
    let url = tpp.authorize_url(&ru);
    let (a, consent_a) = signed_in(&p, &url).await;
    let (b, consent_b) = signed_in(&p, &url).await;
    let back = back_to_client(
        &decide(&a, &consent_a.csrf().unwrap(), "approve").await,
        tpp,
    );
    let code = param(&back, "code").unwrap();
    for decision in ["approve", "deny"] {
        let second = decide(&b, &consent_b.csrf().unwrap(), decision).await;
        assert_ne!(
            second.status.as_u16(),
            303,
            "{decision}: no second redirect"
        );
        assert_eq!(second.location, None);
        if decision == "approve" {
            assert_error_page(&second, 400, "invalid_request_uri");
        }
    }
    // The one code issued still works.
    let t = tpp.exchange_code(&code, &pkce).await.unwrap();
    assert_eq!(t.status, 200, "{:?}", t.body);
    p.finish().await;
}

#[tokio::test]
async fn authorize_ignores_parameters_outside_the_pushed_request() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let r = tpp
        .par(
            &pkce,
            "pushed-state",
            "pushed-nonce",
            &[("scope", "openid accounts")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let ru = r.str("request_uri").unwrap();
    let other = Pkce::new();
    let url = format!(
        "{}&redirect_uri={}&state=evil&nonce=evil&scope={}&code_challenge={}&code_challenge_method=S256&response_type={}&prompt=none",
        tpp.authorize_url(ru),
        enc(EVIL),
        enc("openid accounts payments profile"),
        other.challenge,
        enc("code id_token"),
    );
    let (c, consent) = signed_in(&p, &url).await;
    let back = back_to_client(&decide(&c, &consent.csrf().unwrap(), "approve").await, tpp);
    assert_eq!(param(&back, "state").as_deref(), Some("pushed-state"));
    assert!(param(&back, "id_token").is_none());
    let t = tpp
        .exchange_code(&param(&back, "code").unwrap(), &pkce)
        .await
        .unwrap();
    assert_eq!(
        t.status, 200,
        "the pushed code_challenge applies: {:?}",
        t.body
    );
    let mut scope: Vec<&str> = t.str("scope").unwrap().split(' ').collect();
    scope.sort_unstable();
    assert_eq!(scope, ["accounts", "openid"], "the pushed scope applies");
    assert_eq!(
        jwt_claims(t.str("id_token").unwrap())["nonce"],
        "pushed-nonce"
    );
    p.finish().await;
}

#[tokio::test]
async fn deny_redirects_access_denied_with_state_and_iss() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let ru = push(tpp, &Pkce::new(), "deny-state").await;
        let (c, consent) = signed_in(&p, &tpp.authorize_url(&ru)).await;
        let back = back_to_client(&decide(&c, &consent.csrf().unwrap(), "deny").await, tpp);
        assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
        assert_eq!(param(&back, "state").as_deref(), Some("deny-state"));
        assert_eq!(param(&back, "iss").as_deref(), Some(p.kit.issuer.as_str()));
        assert!(param(&back, "code").is_none());
    }
    p.finish().await;
}

#[tokio::test]
async fn errors_never_redirect_to_an_unverified_uri() {
    let p = TestPlatform::spawn().await;
    let ep = authorization_endpoint(&p.mtls);
    let pushed_by_pkjwt = push(&p.pkjwt, &Pkce::new(), "st").await;
    let evil = enc(EVIL);
    let mtls = enc(&p.mtls.client_id);
    let ru = enc(&pushed_by_pkjwt);
    let unknown = enc("urn:ietf:params:oauth:request_uri:nope");
    let ch = Pkce::new().challenge;
    let queries = [
        format!(
            "response_type=code&client_id={mtls}&redirect_uri={evil}&scope=openid&state=s&code_challenge={ch}&code_challenge_method=S256"
        ),
        format!("client_id={mtls}&request_uri={unknown}&redirect_uri={evil}&state=s"),
        format!("client_id=no-such-client&request_uri={ru}&redirect_uri={evil}&state=s"),
        format!("request_uri={ru}&redirect_uri={evil}&state=s"),
        format!("client_id={mtls}&request_uri={ru}&redirect_uri={evil}&state=s"),
        format!("client_id={mtls}&redirect_uri={evil}&response_type=token&state=s"),
        format!("redirect_uri={evil}"),
    ];
    for q in &queries {
        let c = p.customer();
        let page = c.get(&format!("{ep}?{q}")).await.unwrap();
        assert_eq!(page.status.as_u16(), 400, "{q}");
        assert_eq!(page.location, None, "{q}");
        let page = post_authorize(&c, &p.mtls, q).await;
        assert_eq!(page.status.as_u16(), 400, "POST {q}");
        assert_eq!(page.location, None, "POST {q}");
    }
    // Interaction pages without a session.
    let c = p.customer();
    for path in ["/login", "/login/otp", "/consent"] {
        assert_error_page(&c.get(path).await.unwrap(), 400, "session_expired");
        let page = c
            .post(path, &[("csrf", "x"), ("decision", "approve")])
            .await
            .unwrap();
        assert_error_page(&page, 400, "session_expired");
    }
    // The one error that does redirect (prompt=none) goes to the registered URI.
    let r = p
        .mtls
        .par(&Pkce::new(), "st", "n", &[("prompt", "none")])
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let url = format!(
        "{}&redirect_uri={evil}",
        p.mtls.authorize_url(r.str("request_uri").unwrap())
    );
    let page = p.customer().get(&url).await.unwrap();
    let back = back_to_client(&page, &p.mtls);
    assert_eq!(param(&back, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&back, "iss").as_deref(), Some(p.kit.issuer.as_str()));
    p.finish().await;
}

#[tokio::test]
async fn authorization_responses_are_303() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.pkjwt;
    let ru = push(tpp, &Pkce::new(), "st").await;
    let c = p.customer();
    let first = c.get(&tpp.authorize_url(&ru)).await.unwrap();
    assert_redirect_to(&first, "/login");
    let login = c.get("/login").await.unwrap();
    assert_login_page(&login);
    let csrf = login.csrf().unwrap();
    assert_redirect_to(
        &password(&p, &c, &csrf, &p.kit.customer.password).await,
        "/login/otp",
    );
    assert_redirect_to(&otp(&c, &csrf, &p.fresh_otp()).await, "/consent");
    let consent = c.get("/consent").await.unwrap();
    assert_eq!(consent.status.as_u16(), 200);
    let done = decide(&c, &consent.csrf().unwrap(), "approve").await;
    assert_eq!(done.status.as_u16(), 303, "never 302 or 307");
    let back = back_to_client(&done, tpp);
    assert!(param(&back, "code").is_some());
    assert_eq!(param(&back, "iss").as_deref(), Some(p.kit.issuer.as_str()));
    assert_eq!(param(&back, "state").as_deref(), Some("st"));
    p.finish().await;
}

// ---------------------------------------------------------------- the customer's interaction

#[tokio::test]
async fn login_wrong_password_is_refused_without_advancing() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let ru = push(tpp, &Pkce::new(), "st").await;
    let c = p.customer();
    let login = c.open(&tpp.authorize_url(&ru)).await.unwrap();
    assert_login_page(&login);
    let csrf = login.csrf().unwrap();
    let wrong = password(&p, &c, &csrf, "not-the-password").await;
    assert_eq!(wrong.status.as_u16(), 401, "{}", snippet(&wrong));
    assert_eq!(wrong.location, None);
    assert!(wrong.html.contains("id=\"error\""), "{}", snippet(&wrong));
    assert!(wrong.html.contains("name=\"password\""), "the form again");
    // An unknown user gets exactly the same answer.
    let unknown = c
        .post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", "nobody"),
                ("password", &p.kit.customer.password),
            ],
        )
        .await
        .unwrap();
    assert_eq!(unknown.status.as_u16(), 401);
    assert!(unknown.html.contains("id=\"error\""));
    // Still at the password step: the second factor is not reachable…
    assert_redirect_to(&c.get("/login/otp").await.unwrap(), "/login");
    assert_redirect_to(&otp(&c, &csrf, &p.fresh_otp()).await, "/login");
    assert_redirect_to(&c.get("/consent").await.unwrap(), "/login");
    assert_login_page(&c.get("/login").await.unwrap());
    // …until the right password.
    assert_redirect_to(
        &password(&p, &c, &csrf, &p.kit.customer.password).await,
        "/login/otp",
    );
    p.finish().await;
}

#[tokio::test]
async fn login_page_escapes_what_the_customer_typed() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let c = p.customer();
    let login = c
        .open(&tpp.authorize_url(&push(tpp, &Pkce::new(), "st").await))
        .await
        .unwrap();
    let csrf = login.csrf().unwrap();
    let typed = "\"><script>alert(1)</script><input value=\"";
    let r = c
        .post(
            "/login",
            &[("csrf", &csrf), ("username", typed), ("password", "x")],
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 401);
    assert!(!r.html.contains("<script>"), "{}", snippet(&r));
    // The whole value stays inside the username field's value attribute.
    let field = "name=\"username\" type=\"text\" value=\"";
    let at = r.html.find(field).expect("username field") + field.len();
    let value = &r.html[at..at + r.html[at..].find('"').unwrap()];
    assert!(value.contains("alert(1)"), "attribute break-out: {value}");
    p.finish().await;
}

#[tokio::test]
async fn five_wrong_passwords_end_with_access_denied() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let ru = push(tpp, &Pkce::new(), "five").await;
    let c = p.customer();
    let login = c.open(&tpp.authorize_url(&ru)).await.unwrap();
    let csrf = login.csrf().unwrap();
    for i in 1..5 {
        let r = password(&p, &c, &csrf, &format!("wrong-{i}")).await;
        assert_eq!(r.status.as_u16(), 401, "attempt {i}");
        assert_eq!(r.location, None);
    }
    let fifth = password(&p, &c, &csrf, "wrong-5").await;
    let back = back_to_client(&fifth, tpp);
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&back, "state").as_deref(), Some("five"));
    assert_eq!(param(&back, "iss").as_deref(), Some(p.kit.issuer.as_str()));
    assert!(param(&back, "code").is_none());
    // The interaction is over: even the right password does not revive it.
    let after = password(&p, &c, &csrf, &p.kit.customer.password).await;
    assert_error_page(&after, 400, "session_expired");
    p.finish().await;
}

#[tokio::test]
async fn lockout_answers_the_request_uri() {
    // The access_denied sent after too many failures is the authorization response: the
    // request_uri is spent, so no other session may later answer it with a code.
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let url = tpp.authorize_url(&push(tpp, &pkce, "locked").await);
    // A second session opened before the lockout.
    let other = p.customer();
    let other_login = other.open(&url).await.unwrap();
    assert_login_page(&other_login);
    let c = p.customer();
    let csrf = c.open(&url).await.unwrap().csrf().unwrap();
    for i in 1..5 {
        assert_eq!(
            password(&p, &c, &csrf, &format!("wrong-{i}")).await.status,
            401
        );
    }
    let back = back_to_client(&password(&p, &c, &csrf, "wrong-5").await, tpp);
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    // The link no longer opens…
    assert_error_page(
        &p.customer().get(&url).await.unwrap(),
        400,
        "invalid_request_uri",
    );
    // …and the earlier session cannot turn it into a code (once the username's
    // back-off from those five failures has passed).
    p.clock.advance(61);
    let k = &p.kit.customer;
    let consent = other
        .sign_in(&other_login, &k.username, &k.password, &p.fresh_otp())
        .await
        .unwrap();
    let late = decide(&other, &consent.csrf().unwrap(), "approve").await;
    assert_error_page(&late, 400, "invalid_request_uri");
    p.finish().await;
}

#[tokio::test]
async fn otp_code_cannot_be_replayed() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let code = p.fresh_otp();
    // First sign-in with this code succeeds.
    let a = p.customer();
    let login = a
        .open(&tpp.authorize_url(&push(tpp, &Pkce::new(), "a").await))
        .await
        .unwrap();
    let k = &p.kit.customer;
    let consent = a
        .sign_in(&login, &k.username, &k.password, &code)
        .await
        .unwrap();
    assert_eq!(consent.status.as_u16(), 200);
    // A second sign-in with the same code (same time-step) is refused.
    let b = p.customer();
    let login = b
        .open(&tpp.authorize_url(&push(tpp, &Pkce::new(), "b").await))
        .await
        .unwrap();
    let csrf = login.csrf().unwrap();
    assert_redirect_to(&password(&p, &b, &csrf, &k.password).await, "/login/otp");
    let replay = otp(&b, &csrf, &code).await;
    assert_eq!(replay.status.as_u16(), 401, "{}", snippet(&replay));
    assert_eq!(replay.location, None);
    assert!(replay.html.contains("id=\"error\""));
    assert_redirect_to(&b.get("/consent").await.unwrap(), "/login/otp");
    // A new code is accepted.
    assert_redirect_to(&otp(&b, &csrf, &p.fresh_otp()).await, "/consent");
    p.finish().await;
}

#[tokio::test]
async fn forms_require_the_interaction_csrf_token() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let url = tpp.authorize_url(&push(tpp, &Pkce::new(), "st").await);
    let other = p.customer().open(&url).await.unwrap().csrf().unwrap();
    let c = p.customer();
    let login = c.open(&url).await.unwrap();
    let csrf = login.csrf().unwrap();
    assert_ne!(csrf, other);
    let mut flipped = csrf.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [flipped.as_str(), other.as_str(), ""] {
        let r = password(&p, &c, bad, &p.kit.customer.password).await;
        assert_error_page(&r, 403, "csrf");
    }
    // Nothing advanced.
    assert_login_page(&c.get("/login").await.unwrap());
    assert_redirect_to(
        &password(&p, &c, &csrf, &p.kit.customer.password).await,
        "/login/otp",
    );
    let code = p.fresh_otp();
    assert_error_page(&otp(&c, &flipped, &code).await, 403, "csrf");
    assert_redirect_to(&otp(&c, &csrf, &code).await, "/consent");
    let consent = c.get("/consent").await.unwrap();
    for bad in [flipped.as_str(), other.as_str()] {
        assert_error_page(&decide(&c, bad, "approve").await, 403, "csrf");
    }
    assert_eq!(consent.csrf().as_deref(), Some(csrf.as_str()));
    let back = back_to_client(&decide(&c, &csrf, "approve").await, tpp);
    assert!(param(&back, "code").is_some());
    p.finish().await;
}

#[tokio::test]
async fn consent_requires_the_second_factor() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let c = p.customer();
    let login = c
        .open(&tpp.authorize_url(&push(tpp, &Pkce::new(), "st").await))
        .await
        .unwrap();
    let csrf = login.csrf().unwrap();
    assert_redirect_to(
        &password(&p, &c, &csrf, &p.kit.customer.password).await,
        "/login/otp",
    );
    // Straight to the consent, skipping the OTP.
    assert_redirect_to(&c.get("/consent").await.unwrap(), "/login/otp");
    for decision in ["approve", "deny"] {
        assert_redirect_to(&decide(&c, &csrf, decision).await, "/login/otp");
    }
    // An empty or wrong OTP does not help either.
    for bad in ["", "000000x", "12345"] {
        let r = otp(&c, &csrf, bad).await;
        assert_eq!(r.status.as_u16(), 401, "{bad:?}");
        assert_redirect_to(&decide(&c, &csrf, "approve").await, "/login/otp");
    }
    // Control: with the OTP the consent is reachable.
    assert_redirect_to(&otp(&c, &csrf, &p.fresh_otp()).await, "/consent");
    let back = back_to_client(&decide(&c, &csrf, "approve").await, tpp);
    assert!(param(&back, "code").is_some());
    p.finish().await;
}

#[tokio::test]
async fn interaction_cookie_is_host_prefixed_secure_httponly_lax() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let c = p.customer();
    let first = c
        .get(&tpp.authorize_url(&push(tpp, &Pkce::new(), "st").await))
        .await
        .unwrap();
    assert_redirect_to(&first, "/login");
    let cookies: Vec<&str> = first
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let mut parts = cookies[0].split(';').map(str::trim);
    let (name, value) = parts.next().unwrap().split_once('=').unwrap();
    assert!(name.starts_with("__Host-"), "{name}");
    assert!(value.len() >= 22, "session id carries ≥ 128 bits");
    let attrs: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
    for want in ["secure", "httponly", "samesite=lax", "path=/"] {
        assert!(attrs.iter().any(|a| a == want), "{want} in {cookies:?}");
    }
    assert!(
        !attrs.iter().any(|a| a.starts_with("domain=")),
        "__Host- cookies carry no Domain"
    );
    p.finish().await;
}

#[track_caller]
fn assert_page_headers(page: &Page, what: &str) {
    let h = |n: &str| {
        page.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {n}"))
            .to_owned()
    };
    let csp = h("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    let hsts = h("strict-transport-security");
    let max_age: i64 = hsts
        .split(';')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(max_age >= 31_536_000, "{what}: {hsts}");
    assert_eq!(h("x-frame-options"), "DENY", "{what}");
    assert_eq!(h("cache-control"), "no-store", "{what}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let c = p.customer();
    let first = c
        .get(&tpp.authorize_url(&push(tpp, &Pkce::new(), "st").await))
        .await
        .unwrap();
    assert_eq!(
        first
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert!(first.headers.get("strict-transport-security").is_some());
    let login = c.get("/login").await.unwrap();
    assert_page_headers(&login, "login");
    let csrf = login.csrf().unwrap();
    assert_page_headers(&password(&p, &c, &csrf, "wrong").await, "wrong password");
    password(&p, &c, &csrf, &p.kit.customer.password).await;
    assert_page_headers(&c.get("/login/otp").await.unwrap(), "otp");
    otp(&c, &csrf, &p.fresh_otp()).await;
    assert_page_headers(&c.get("/consent").await.unwrap(), "consent");
    assert_page_headers(
        &p.customer().get(&tpp.authorize_url("urn:x")).await.unwrap(),
        "error",
    );
    assert_page_headers(&p.customer().get("/consent").await.unwrap(), "no session");
    p.finish().await;
}

#[tokio::test]
async fn authorize_sends_no_cors_headers() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let good = tpp.authorize_url(&push(tpp, &Pkce::new(), "st").await);
    let bad = tpp.authorize_url("urn:x");
    let http = &tpp.http_no_cert;
    for (method, url) in [
        (reqwest::Method::GET, &good),
        (reqwest::Method::GET, &bad),
        (reqwest::Method::POST, &bad),
        (reqwest::Method::OPTIONS, &good),
    ] {
        let r = http
            .request(method.clone(), url.as_str())
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        if method == reqwest::Method::GET && url == &good {
            assert_eq!(r.status().as_u16(), 303, "control: a real answer");
        }
        for h in r.headers().keys() {
            assert!(
                !h.as_str().starts_with("access-control-"),
                "{method} {url}: {h}"
            );
        }
    }
    p.finish().await;
}

// ---------------------------------------------------------------- the authorization code

#[tokio::test]
async fn authorization_code_is_single_use_and_replay_revokes_tokens() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let code = code_for(&p, tpp, &pkce).await;
    let t = exchange(&p, tpp, &code, Some(&pkce.verifier)).await;
    assert_eq!(t.status, 200, "{:?}", t.body);
    let at = t.str("access_token").unwrap().to_owned();
    let rt = t.str("refresh_token").unwrap().to_owned();
    let userinfo = tpp.endpoint("userinfo_endpoint");
    assert_eq!(
        tpp.get_with_token(&userinfo, &at, true)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(introspect(tpp, &rt).await.body["active"], true);

    let again = exchange(&p, tpp, &code, Some(&pkce.verifier)).await;
    assert_oauth_error(&again, 400, "invalid_grant");
    assert!(again.str("access_token").is_none());

    let refresh = token(
        &p,
        tpp,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_oauth_error(&refresh, 400, "invalid_grant");
    let ui = tpp.get_with_token(&userinfo, &at, true).await.unwrap();
    assert_eq!(ui.status.as_u16(), 401, "{:?}", ui.body);
    assert_eq!(ui.error(), "invalid_token");
    assert_eq!(introspect(tpp, &at).await.body["active"], false);
    assert_eq!(introspect(tpp, &rt).await.body["active"], false);
    p.finish().await;
}

#[tokio::test]
async fn authorization_code_expires_after_60_seconds() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let code = code_for(&p, tpp, &pkce).await;
    p.clock.advance(61);
    let r = exchange(&p, tpp, &code, Some(&pkce.verifier)).await;
    assert_oauth_error(&r, 400, "invalid_grant");
    assert!(r.str("access_token").is_none());
    p.finish().await;
}

#[tokio::test]
async fn authorization_code_is_bound_to_its_client() {
    let p = TestPlatform::spawn().await;
    for (issued_to, thief) in [(&p.pkjwt, &p.mtls), (&p.mtls, &p.pkjwt)] {
        let pkce = Pkce::new();
        let code = code_for(&p, issued_to, &pkce).await;
        assert_eq!(issued_to.redirect_uri, thief.redirect_uri);
        let r = exchange(&p, thief, &code, Some(&pkce.verifier)).await;
        assert_oauth_error(&r, 400, "invalid_grant");
        assert!(r.str("access_token").is_none());
    }
    p.finish().await;
}

#[tokio::test]
async fn token_rejects_a_wrong_code_verifier() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let code = code_for(&p, tpp, &pkce).await;
    let r = exchange(&p, tpp, &code, Some(&Pkce::new().verifier)).await;
    assert_oauth_error(&r, 400, "invalid_grant");
    assert!(r.str("access_token").is_none());
    p.finish().await;
}

#[tokio::test]
async fn token_requires_a_code_verifier() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let code = code_for(&p, tpp, &pkce).await;
    let r = exchange(&p, tpp, &code, None).await;
    assert_oauth_error(&r, 400, "invalid_grant");
    assert!(r.str("access_token").is_none());
    p.finish().await;
}

#[tokio::test]
async fn token_rejects_a_redirect_uri_mismatch() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let code = code_for(&p, tpp, &pkce).await;
    let r = token(
        &p,
        tpp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", EVIL),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant");
    assert!(r.str("access_token").is_none());
    p.finish().await;
}

#[tokio::test]
async fn token_requires_the_redirect_uri() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let pkce = Pkce::new();
    let code = code_for(&p, tpp, &pkce).await;
    let r = token(
        &p,
        tpp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
    assert!(r.str("access_token").is_none());
    p.finish().await;
}
