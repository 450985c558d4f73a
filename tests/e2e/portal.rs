//! The developer portal (issue 9): developers sign up and sign in over HTTPS as a
//! browser without JavaScript would, organisations with roles (each rule with a test
//! that fails if the rule is removed), apps whose sandbox clients then complete the real
//! FAPI flow over mTLS with the downloaded kit, CSR signing, key checks, deletion, and
//! the go-live review with its audit trail, and the sandbox event triggers whose webhooks
//! reach a real HTTPS receiver.

use authz_server::clock::Clock;
use base64::Engine;
use fapi_conformance::browser::{Customer, Page, param, totp};
use fapi_conformance::{Kit, Pkce, Tpp};
use fapi_jose::{Alg, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use wekeza_tests::TestPlatform;

/// A developer's browser: a cookie-keeping agent on the portal.
struct DevAgent {
    web: Customer,
    username: String,
    password: String,
}

impl DevAgent {
    async fn signup(p: &TestPlatform, username: &str) -> Self {
        let web = p.customer();
        let form = web.get("/portal/signup").await.unwrap();
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf().unwrap();
        let password = format!("pw-{username}-long-enough");
        let email = format!("{username}@example.test");
        let r = web
            .post(
                "/portal/signup",
                &[
                    ("csrf", &csrf),
                    ("username", username),
                    ("email", &email),
                    ("password", &password),
                ],
            )
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
        assert_eq!(r.location.as_deref(), Some("/portal"));
        Self {
            web,
            username: username.into(),
            password,
        }
    }

    async fn login(p: &TestPlatform, login: &str, password: &str) -> (Self, Page) {
        let web = p.customer();
        let form = web.get("/portal/login").await.unwrap();
        let csrf = form.csrf().unwrap();
        let r = web
            .post(
                "/portal/login",
                &[("csrf", &csrf), ("username", login), ("password", password)],
            )
            .await
            .unwrap();
        (
            Self {
                web,
                username: login.into(),
                password: password.into(),
            },
            r,
        )
    }

    /// A fresh sign-in (e.g. to accept invitations).
    async fn relogin(&self, p: &TestPlatform) -> Self {
        let (d, r) = Self::login(p, &self.username, &self.password).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
        d
    }

    async fn get(&self, path: &str) -> Page {
        self.web.get(path).await.unwrap()
    }

    async fn csrf(&self) -> String {
        self.get("/portal").await.csrf().expect("signed in")
    }

    /// POST a form with the session's CSRF token.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut f: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        f.extend_from_slice(form);
        self.web.post(path, &f).await.unwrap()
    }

    async fn create_org(&self, name: &str) -> String {
        let r = self.post("/portal/orgs", &[("name", name)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
        r.location
            .unwrap()
            .strip_prefix("/portal/orgs/")
            .unwrap()
            .to_owned()
    }

    async fn create_app(&self, org: &str, form: &[(&str, &str)]) -> Page {
        self.post(&format!("/portal/orgs/{org}/apps"), form).await
    }
}

/// The developer id of `username` as listed on the org page (`…/members/{id}/role`).
fn member_id(org_page: &str, org: &str, username: &str) -> String {
    let mark = format!("data-member=\"{username}\"");
    let at = org_page.find(&mark).expect("member listed");
    let rest = &org_page[at..];
    let pre = format!("/portal/orgs/{org}/members/");
    let i = rest.find(&pre).expect("member forms") + pre.len();
    rest[i..].split('/').next().unwrap().to_owned()
}

fn attr_after(html: &str, mark: &str) -> String {
    let i = html.find(mark).unwrap_or_else(|| panic!("{mark} in page")) + mark.len();
    html[i..].split('"').next().unwrap().to_owned()
}

/// The kit from the one-time keys page (the `data:` download link).
fn kit_from_secrets_page(html: &str) -> Value {
    let uri = attr_after(html, "id=\"download-kit-with-keys\" href=\"");
    let b64 = uri.strip_prefix("data:application/json;base64,").unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// Save a kit (and its inline files) as a developer would, then load it as a TPP.
fn save_kit(p: &TestPlatform, kit: &Value, extra: &[(&str, &str)]) -> (PathBuf, Kit) {
    let dir = p
        .dir
        .join(format!("dev-kit-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in extra {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let path = dir.join("kit.json");
    std::fs::write(&path, serde_json::to_vec_pretty(kit).unwrap()).unwrap();
    Kit::unpack(&path).unwrap();
    let k = Kit::load(&path).unwrap();
    (dir, k)
}

async fn tpp_of(p: &TestPlatform, kit: &Kit) -> Tpp {
    let mut tpp = Tpp::from_kit(kit, &kit.clients[0]).await.unwrap();
    let c = p.clock.clone();
    tpp.clock = Arc::new(move || c.now());
    tpp
}

/// PAR → the kit's test customer signs in and approves → code → token.
async fn full_flow(p: &TestPlatform, kit: &Kit, tpp: &Tpp) -> wekeza_tests::Reply {
    let pkce = Pkce::new();
    let par = tpp.par(&pkce, "st-portal", "n-portal", &[]).await.unwrap();
    assert_eq!(par.status, 201, "PAR: {:?}", par.body);
    let url = tpp.authorize_url(par.str("request_uri").unwrap());
    p.clock.advance(30);
    let otp = totp(&kit.customer.totp_secret, p.clock.now()).unwrap();
    let agent = Customer::new(&std::fs::read(&kit.ca_cert).unwrap(), &kit.issuer).unwrap();
    let back = agent
        .authorize(
            &url,
            &kit.customer.username,
            &kit.customer.password,
            &otp,
            true,
        )
        .await
        .unwrap();
    let code = param(&back, "code").expect("code");
    tpp.exchange_code(&code, &pkce).await.unwrap()
}

fn app_form<'a>(
    name: &'a str,
    callback: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("name", name),
        ("redirect_uris", callback),
        ("scope", "openid"),
        ("scope", "accounts"),
        ("scope", "payments"),
    ];
    f.extend_from_slice(extra);
    f
}

#[tokio::test]
async fn signup_login_logout_and_backoff() {
    let p = TestPlatform::spawn().await;
    let dev = DevAgent::signup(&p, "ada").await;
    let home = dev.get("/portal").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.html
            .contains("Signed in as <strong id=\"signed-in-name\">ada</strong>")
    );
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"));

    // The username is taken; a short password is refused.
    let other = p.customer();
    let csrf = other.get("/portal/signup").await.unwrap().csrf().unwrap();
    let r = other
        .post(
            "/portal/signup",
            &[
                ("csrf", &csrf),
                ("username", "ada"),
                ("email", "x@example.test"),
                ("password", "long enough password"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = other
        .post(
            "/portal/signup",
            &[
                ("csrf", &csrf),
                ("username", "bob"),
                ("email", "bob@example.test"),
                ("password", "short"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Developers are not bank customers: alice's bank password does not open the portal,
    // and a developer's password does not sign in to the customer dashboard.
    let (_, r) = DevAgent::login(&p, "alice", &p.kit.customer.password).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Sign in by email; sign out ends the session.
    let (dev2, r) = DevAgent::login(&p, "ada@example.test", &dev.password).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let csrf = dev2.csrf().await;
    let r = dev2
        .web
        .post("/portal/logout", &[("csrf", &csrf)])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = dev2.get("/portal").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/portal/login"));

    // A sign-in form without its CSRF token is refused.
    let web = p.customer();
    web.get("/portal/login").await.unwrap();
    let r = web
        .post(
            "/portal/login",
            &[("username", "ada"), ("password", &dev.password)],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Back-off: five wrong passwords lock the name, even the right password then.
    let mut last = StatusCode::OK;
    for _ in 0..5 {
        let (_, r) = DevAgent::login(&p, "ada", "wrong password!").await;
        last = r.status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let (_, r) = DevAgent::login(&p, "ada", &dev.password).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    // Its own namespace: the bank customer of the same name is not locked by it.
    let subject = authz_server::digest("login:ada");
    let locked = p
        .state()
        .auth
        .throttle_locked_until(&subject, p.clock.now())
        .await
        .unwrap();
    assert_eq!(locked, None);
    p.finish().await;
}

#[tokio::test]
async fn organisation_roles_are_enforced() {
    let p = TestPlatform::spawn().await;
    let cb = format!("{}/sandbox/callback", p.kit.issuer);
    let owner = DevAgent::signup(&p, "olive").await;
    let dana = DevAgent::signup(&p, "dana").await;
    let vic = DevAgent::signup(&p, "vic").await;
    let eve = DevAgent::signup(&p, "eve").await;
    let org = owner.create_org("Olive Fintech").await;

    // CSRF missing → refused, nothing created.
    let r = owner
        .web
        .post(
            &format!("/portal/orgs/{org}/members"),
            &[("invitee", "dana"), ("role", "developer")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = owner
        .post(
            &format!("/portal/orgs/{org}/members"),
            &[("invitee", "dana"), ("role", "developer")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let r = owner
        .post(
            &format!("/portal/orgs/{org}/members"),
            &[("invitee", "vic@example.test"), ("role", "viewer")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // Invitations are accepted on the next sign-in.
    let dana = dana.relogin(&p).await;
    let vic = vic.relogin(&p).await;
    let page = owner.get(&format!("/portal/orgs/{org}")).await;
    let dana_id = member_id(&page.html, &org, "dana");
    let vic_id = member_id(&page.html, &org, "vic");
    let owner_id = member_id(&page.html, &org, "olive");

    // Viewer: reads, cannot create apps (form and POST).
    assert_eq!(
        vic.get(&format!("/portal/orgs/{org}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        vic.get(&format!("/portal/orgs/{org}/apps/new"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let form = app_form(
        "Viewer App",
        &cb,
        &[("auth_method", "tls_client_auth"), ("keys", "generate")],
    );
    assert_eq!(
        vic.create_app(&org, &form).await.status,
        StatusCode::FORBIDDEN
    );

    // Developer: creates apps, cannot change roles, invite or remove.
    let r = dana.create_app(&org, &form).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.html);
    let app_id = attr_after(&r.html, "href=\"/portal/apps/");
    let r = dana
        .post(
            &format!("/portal/orgs/{org}/members/{vic_id}/role"),
            &[("role", "owner")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = dana
        .post(
            &format!("/portal/orgs/{org}/members"),
            &[("invitee", "eve"), ("role", "owner")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = dana
        .post(
            &format!("/portal/orgs/{org}/members/{owner_id}/remove"),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Viewer cannot delete or change the app either.
    let r = vic
        .post(&format!("/portal/apps/{app_id}/delete"), &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Non-member: neither the org nor its app nor the app's kit exists for them.
    assert_eq!(
        eve.get(&format!("/portal/orgs/{org}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        eve.get(&format!("/portal/apps/{app_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        eve.get(&format!("/portal/apps/{app_id}/kit")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = eve
        .post(&format!("/portal/apps/{app_id}/delete"), &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A viewer may read the app.
    assert_eq!(
        vic.get(&format!("/portal/apps/{app_id}")).await.status,
        StatusCode::OK
    );

    // Owner: changes roles and removes members; the last owner stays.
    let r = owner
        .post(
            &format!("/portal/orgs/{org}/members/{owner_id}/role"),
            &[("role", "viewer")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = owner
        .post(
            &format!("/portal/orgs/{org}/members/{vic_id}/role"),
            &[("role", "developer")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        vic.get(&format!("/portal/orgs/{org}/apps/new"))
            .await
            .status,
        StatusCode::OK
    );
    let r = owner
        .post(&format!("/portal/orgs/{org}/members/{dana_id}/remove"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        dana.get(&format!("/portal/apps/{app_id}")).await.status,
        StatusCode::NOT_FOUND
    );

    // The owner sees the audit trail; a developer does not.
    let page = owner.get(&format!("/portal/orgs/{org}")).await;
    for action in [
        "org_created",
        "member_invited",
        "invitation_accepted",
        "app_created",
        "role_changed",
        "member_removed",
    ] {
        assert!(page.html.contains(action), "audit has {action}");
    }
    assert!(
        !vic.get(&format!("/portal/orgs/{org}"))
            .await
            .html
            .contains("id=\"audit\"")
    );
    p.finish().await;
}

#[tokio::test]
async fn app_clients_complete_the_flow_with_the_kit() {
    let p = TestPlatform::spawn().await;
    let cb = format!("{}/sandbox/callback", p.kit.issuer);
    let dev = DevAgent::signup(&p, "kit-dev").await;
    let org = dev.create_org("Kit Co").await;

    // private_key_jwt, keys generated in the portal: the one-time page carries the kit.
    let r = dev
        .create_app(
            &org,
            &app_form(
                "Budget",
                &cb,
                &[("auth_method", "private_key_jwt"), ("keys", "generate")],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.html);
    let app_id = attr_after(&r.html, "href=\"/portal/apps/");
    let kit_value = kit_from_secrets_page(&r.html);
    // Same field names as certs/sandbox/kit.json.
    let disk: Value = serde_json::from_slice(
        &std::fs::read(p.platform.as_ref().unwrap().kit_path.as_ref().unwrap()).unwrap(),
    )
    .unwrap();
    for k in [
        "issuer",
        "resource_base_url",
        "ca_cert",
        "customer",
        "clients",
        "discovery_url",
        "mtls_base_url",
    ] {
        assert!(disk.get(k).is_some() && kit_value.get(k).is_some(), "{k}");
    }
    let (_, kit) = save_kit(&p, &kit_value, &[]);
    let tpp = tpp_of(&p, &kit).await;
    let tokens = full_flow(&p, &kit, &tpp).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    // The private keys are not stored: the later kit download has none.
    let later = dev.get(&format!("/portal/apps/{app_id}/kit")).await;
    assert_eq!(later.status, StatusCode::OK);
    let later: Value = serde_json::from_str(&later.html).unwrap();
    let files = later["files"].as_object().unwrap();
    assert!(
        files
            .keys()
            .all(|k| !k.ends_with(".key") && !k.ends_with(".jwk.json"))
    );
    assert!(!later.to_string().contains("\"d\":"));

    // A JWKS holding a private key is refused, and no client is made.
    let key = SigningKey::generate(Alg::ES256, "k1").unwrap();
    let private = json!({"keys": [key.to_private_jwk().unwrap()]}).to_string();
    let r = dev
        .create_app(
            &org,
            &app_form(
                "Leaky",
                &cb,
                &[
                    ("auth_method", "private_key_jwt"),
                    ("keys", "jwks"),
                    ("jwks", &private),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.html.contains("public keys only"), "{}", r.html);
    // Non-FAPI redirect URI refused by the same rules as registration.
    let public = json!({"keys": [key.public_jwk()]}).to_string();
    let r = dev
        .create_app(
            &org,
            &app_form(
                "Plain",
                "http://example.test/cb",
                &[
                    ("auth_method", "private_key_jwt"),
                    ("keys", "jwks"),
                    ("jwks", &public),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // tls_client_auth with a public JWKS upload and a CSR: the key never leaves us.
    let r = dev
        .create_app(
            &org,
            &app_form(
                "Payroll",
                &cb,
                &[
                    ("auth_method", "tls_client_auth"),
                    ("keys", "jwks"),
                    ("jwks", &public),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let mtls_app = r
        .location
        .unwrap()
        .strip_prefix("/portal/apps/")
        .unwrap()
        .to_owned();
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key_pair)
        .unwrap()
        .pem()
        .unwrap();
    // A CSR signed by another key is refused.
    let r = dev
        .post(
            &format!("/portal/apps/{mtls_app}/csr"),
            &[(
                "csr",
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
            )],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = dev
        .post(&format!("/portal/apps/{mtls_app}/csr"), &[("csr", &csr)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let kit_page = dev.get(&format!("/portal/apps/{mtls_app}/kit")).await;
    let kit_value: Value = serde_json::from_str(&kit_page.html).unwrap();
    let client_id = kit_value["clients"][0]["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_pem = key_pair.serialize_pem();
    let (_, kit) = save_kit(&p, &kit_value, &[(&format!("{client_id}.key"), &key_pem)]);
    let tpp = tpp_of(&p, &kit).await;
    let tokens = full_flow(&p, &kit, &tpp).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    let cc = tpp.client_credentials("accounts").await.unwrap();
    assert_eq!(cc.status, 200, "{:?}", cc.body);

    // Deleting the app removes its client: /token refuses it, and the access token
    // issued before is refused at userinfo (its consent is revoked).
    let at = tokens.str("access_token").unwrap().to_owned();
    let userinfo = tpp.endpoint("userinfo_endpoint");
    assert_eq!(
        tpp.get_with_token(&userinfo, &at, true)
            .await
            .unwrap()
            .status,
        200
    );
    let r = dev
        .post(&format!("/portal/apps/{mtls_app}/delete"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        tpp.get_with_token(&userinfo, &at, true)
            .await
            .unwrap()
            .status,
        401
    );
    let cc = tpp.client_credentials("accounts").await.unwrap();
    assert_eq!(cc.status, 401, "{:?}", cc.body);
    assert_eq!(cc.error(), "invalid_client");
    p.finish().await;
}

#[tokio::test]
async fn go_live_needs_the_reviewer_and_is_audited() {
    let p = TestPlatform::spawn().await;
    let cb = format!("{}/sandbox/callback", p.kit.issuer);
    let dev = DevAgent::signup(&p, "gl-dev").await;
    let org = dev.create_org("Go Live Ltd").await;
    let r = dev
        .create_app(
            &org,
            &app_form(
                "Live App",
                &cb,
                &[("auth_method", "private_key_jwt"), ("keys", "generate")],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let app_id = attr_after(&r.html, "href=\"/portal/apps/");
    let (_, kit) = save_kit(&p, &kit_from_secrets_page(&r.html), &[]);

    // Not an admin: the review page does not exist, decisions are refused.
    assert_eq!(dev.get("/portal/admin").await.status, StatusCode::NOT_FOUND);
    let r = dev
        .post(&format!("/portal/apps/{app_id}/golive"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = dev
        .post(
            &format!("/portal/admin/apps/{app_id}/decide"),
            &[("decision", "approve"), ("reason", "self")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let page = dev.get(&format!("/portal/apps/{app_id}")).await;
    assert!(!page.html.contains("production-client-id"));

    // The seeded reviewer's credentials are next to the kit.
    let creds: Value = serde_json::from_slice(
        &std::fs::read(
            p.dir
                .join("certs")
                .join("sandbox")
                .join("portal-admin.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let (admin, r) = DevAgent::login(
        &p,
        creds["username"].as_str().unwrap(),
        creds["password"].as_str().unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let review = admin.get("/portal/admin").await;
    assert_eq!(review.status, StatusCode::OK);
    assert!(review.html.contains("Go Live Ltd") && review.html.contains("gl-dev@example.test"));
    // A reason is required.
    let r = admin
        .post(
            &format!("/portal/admin/apps/{app_id}/decide"),
            &[("decision", "reject"), ("reason", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin
        .post(
            &format!("/portal/admin/apps/{app_id}/decide"),
            &[("decision", "reject"), ("reason", "privacy policy missing")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = dev.get(&format!("/portal/apps/{app_id}")).await;
    assert!(page.html.contains("rejected") && page.html.contains("privacy policy missing"));
    assert!(!page.html.contains("production-client-id"));

    // Asked again, approved: only now a production client exists, and it works.
    dev.post(&format!("/portal/apps/{app_id}/golive"), &[])
        .await;
    let r = admin
        .post(
            &format!("/portal/admin/apps/{app_id}/decide"),
            &[("decision", "approve"), ("reason", "checks passed")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = dev.get(&format!("/portal/apps/{app_id}")).await;
    let prod = attr_after(&page.html, "<code id=\"production-client-id\">").to_owned();
    let prod = prod.split('<').next().unwrap().to_owned();
    assert!(prod.starts_with("prod-"));
    let reg = p
        .state()
        .store
        .registrations()
        .unwrap()
        .find_registration(&prod)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reg.metadata["environment"], "production");
    let mut tpp = tpp_of(&p, &kit).await;
    tpp.client_id = prod.clone();
    let cc = tpp.client_credentials("accounts").await.unwrap();
    assert_eq!(cc.status, 200, "{:?}", cc.body);

    // Every step is in the org's audit trail, shown to the owner.
    let org_page = dev.get(&format!("/portal/orgs/{org}")).await;
    for a in [
        "app_created",
        "golive_requested",
        "golive_rejected",
        "golive_approved",
        "checks passed",
    ] {
        assert!(org_page.html.contains(a), "{a}");
    }
    p.finish().await;
}

#[tokio::test]
async fn docs_guide_errors_and_swagger() {
    let p = TestPlatform::spawn().await;
    let web = p.customer();
    let docs = web.get("/portal/docs").await.unwrap();
    assert_eq!(docs.status, StatusCode::OK, "{}", docs.html);
    let guide = web.get("/portal/docs/guide").await.unwrap();
    assert!(guide.html.contains(
        &format!("{}/par", p.pkjwt.endpoint("token_endpoint").trim_end_matches("/token"))
    ));
    let errors = web.get("/portal/docs/errors").await.unwrap();
    for code in [
        "invalid_client",
        "use_dpop_nonce",
        "invalid_client_metadata",
        "UK.OBIE.Resource.ConsentMismatch",
        "UK.OBIE.Field.Missing",
    ] {
        assert!(errors.html.contains(code), "{code}");
    }
    let ui = web.get("/portal/docs/api/").await.unwrap();
    assert_eq!(ui.status, StatusCode::OK);
    for doc in ["authorization-server", "resource-server"] {
        let r = web
            .get(&format!("/portal/docs/api/{doc}.json"))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{doc}");
        let v: Value = serde_json::from_str(&r.html).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        assert!(
            v["paths"].as_object().is_some_and(|p| !p.is_empty()),
            "{doc}"
        );
    }
    p.finish().await;
}

#[tokio::test]
async fn developer_totp_is_asked_once_enrolled() {
    let p = TestPlatform::spawn().await;
    let dev = DevAgent::signup(&p, "tina").await;
    let r = dev.post("/portal/security/totp/start", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.html);
    let mark = "aria-labelledby=\"totp-secret-label\">";
    let i = r.html.find(mark).unwrap() + mark.len();
    let secret = r.html[i..].split('<').next().unwrap().to_owned();
    // A wrong code does not turn it on.
    let r = dev
        .post("/portal/security/totp/confirm", &[("otp", "000000")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    p.clock.advance(30);
    let code = totp(&secret, p.clock.now()).unwrap();
    let r = dev
        .post("/portal/security/totp/confirm", &[("otp", &code)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);

    // The password alone no longer signs in: the code step follows.
    let (agent, r) = DevAgent::login(&p, "tina", &dev.password).await;
    assert_eq!(r.location.as_deref(), Some("/portal/login/otp"));
    assert_eq!(agent.get("/portal").await.status, StatusCode::SEE_OTHER);
    let form = agent.get("/portal/login/otp").await;
    let csrf = form.csrf().unwrap();
    // The code already used at enrolment is spent.
    let r = agent
        .web
        .post("/portal/login/otp", &[("csrf", &csrf), ("otp", &code)])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    p.clock.advance(30);
    let fresh = totp(&secret, p.clock.now()).unwrap();
    let r = agent
        .web
        .post("/portal/login/otp", &[("csrf", &csrf), ("otp", &fresh)])
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert_eq!(agent.get("/portal").await.status, StatusCode::OK);
    // The secret is stored sealed, never in clear.
    let rec = p
        .state()
        .store
        .portal()
        .unwrap()
        .find_developer_by_login("tina")
        .await
        .unwrap()
        .unwrap();
    assert!(!rec.totp_secret.unwrap().contains(&secret));
    p.finish().await;
}

#[tokio::test]
async fn sandbox_test_customers_sign_in_with_their_known_credentials() {
    let p = TestPlatform::spawn().await;
    let owner = DevAgent::signup(&p, "sam").await;
    let viewer = DevAgent::signup(&p, "val").await;
    let org = owner.create_org("Sandbox Tools Ltd").await;
    owner
        .post(
            &format!("/portal/orgs/{org}/members"),
            &[("invitee", "val"), ("role", "viewer")],
        )
        .await;
    let viewer = viewer.relogin(&p).await;
    // A viewer can neither make nor see test customers.
    let r = viewer
        .post(&format!("/portal/orgs/{org}/test-customers"), &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = owner
        .post(&format!("/portal/orgs/{org}/test-customers"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let page = owner.get(&format!("/portal/orgs/{org}")).await;
    assert!(
        !viewer
            .get(&format!("/portal/orgs/{org}"))
            .await
            .html
            .contains("id=\"test-customers\"")
    );
    let row = page.html.split("<tbody>").nth(1).unwrap();
    let cells: Vec<String> = row
        .split("<code>")
        .skip(1)
        .take(3)
        .map(|c| c.split('<').next().unwrap().to_owned())
        .collect();
    // The customer signs in at the bank's authorization pages with those credentials
    // and has accounts to share.
    let pkce = Pkce::new();
    let par = p.mtls.par(&pkce, "s", "n", &[]).await.unwrap();
    let url = p.mtls.authorize_url(par.str("request_uri").unwrap());
    p.clock.advance(30);
    let otp = totp(&cells[2], p.clock.now()).unwrap();
    let back = p
        .customer()
        .authorize(&url, &cells[0], &cells[1], &otp, true)
        .await
        .unwrap();
    assert!(param(&back, "code").is_some(), "{back}");
    let bank = p.state().bank.clone();
    let sub = p
        .state()
        .store
        .find_customer_by_username(&cells[0])
        .await
        .unwrap()
        .unwrap()
        .id;
    let customer = bank.customer_for_subject(&sub).await.unwrap().unwrap();
    assert!(!bank.accounts(&customer.id).await.unwrap().is_empty());

    // Reset: a viewer may not; the owner's reset revokes the customer's consents and
    // retires the customer (its credentials stop working); a fresh one is listed.
    let r = viewer
        .post(&format!("/portal/orgs/{org}/sandbox/reset"), &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = owner
        .post(&format!("/portal/orgs/{org}/sandbox/reset"), &[])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let consents = p
        .state()
        .store
        .list_consents_for_customer(&sub)
        .await
        .unwrap();
    assert!(!consents.is_empty());
    assert!(
        consents
            .iter()
            .all(|c| c.status == authz_store::ConsentStatus::Revoked)
    );
    let page = owner.get(&format!("/portal/orgs/{org}")).await;
    let table = page
        .html
        .split("<tbody>")
        .nth(1)
        .unwrap()
        .split("</tbody>")
        .next()
        .unwrap();
    assert!(
        !table.contains(&cells[0]) && table.contains("tester-"),
        "{table}"
    );
    let par = p.mtls.par(&pkce, "s2", "n2", &[]).await.unwrap();
    let url = p.mtls.authorize_url(par.str("request_uri").unwrap());
    p.clock.advance(30);
    let otp = totp(&cells[2], p.clock.now()).unwrap();
    assert!(
        p.customer()
            .authorize(&url, &cells[0], &cells[1], &otp, true)
            .await
            .is_err()
    );
    p.finish().await;
}

#[tokio::test]
async fn rotated_keys_replace_the_old_ones() {
    let p = TestPlatform::spawn().await;
    let cb = format!("{}/sandbox/callback", p.kit.issuer);
    let dev = DevAgent::signup(&p, "rita").await;
    let org = dev.create_org("Rotation Ltd").await;
    let r = dev
        .create_app(
            &org,
            &app_form(
                "Rotor",
                &cb,
                &[("auth_method", "private_key_jwt"), ("keys", "generate")],
            ),
        )
        .await;
    let app_id = attr_after(&r.html, "href=\"/portal/apps/");
    let (dir, kit) = save_kit(&p, &kit_from_secrets_page(&r.html), &[]);
    let old = tpp_of(&p, &kit).await;
    assert_eq!(
        old.client_credentials("accounts").await.unwrap().status,
        200
    );

    // A JWKS with private members is refused at rotation too; nothing changes.
    let key = SigningKey::generate(Alg::ES256, "rot-2").unwrap();
    let private = json!({"keys": [key.to_private_jwk().unwrap()]}).to_string();
    let r = dev
        .post(
            &format!("/portal/apps/{app_id}/keys"),
            &[("jwks", &private)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        old.client_credentials("accounts").await.unwrap().status,
        200
    );

    // The new public key replaces the old one: old assertions are refused.
    let public = json!({"keys": [key.public_jwk()]}).to_string();
    let r = dev
        .post(&format!("/portal/apps/{app_id}/keys"), &[("jwks", &public)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let refused = old.client_credentials("accounts").await.unwrap();
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    let client_id = kit.clients[0].client_id.clone();
    std::fs::write(
        dir.join(format!("{client_id}.jwk.json")),
        serde_json::to_vec(&key.to_private_jwk().unwrap()).unwrap(),
    )
    .unwrap();
    let new = tpp_of(&p, &Kit::load(&dir.join("kit.json")).unwrap()).await;
    assert_eq!(
        new.client_credentials("accounts").await.unwrap().status,
        200
    );
    p.finish().await;
}

/// The org's usage pages show exactly the calls its app made: metered by the gateway,
/// drawn as SVG, exported as CSV, priced on the statement; members only.
#[tokio::test]
async fn usage_pages_show_the_calls_the_app_made() {
    let p = TestPlatform::spawn().await;
    let cb = format!("{}/sandbox/callback", p.kit.issuer);
    let dev = DevAgent::signup(&p, "usage-dev").await;
    let org = dev.create_org("Usage Co").await;
    let r = dev
        .create_app(
            &org,
            &app_form(
                "Metered",
                &cb,
                &[("auth_method", "private_key_jwt"), ("keys", "generate")],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.html);
    let (_, kit) = save_kit(&p, &kit_from_secrets_page(&r.html), &[]);
    let tpp = tpp_of(&p, &kit).await;
    let client_id = tpp.client_id.clone();
    // The app's calls: PAR + token (the flow), then three client-credentials tokens and
    // one refused code exchange (the client authenticates, the code is unknown).
    let tokens = full_flow(&p, &kit, &tpp).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    for _ in 0..3 {
        let t = tpp.client_credentials("accounts").await.unwrap();
        assert_eq!(t.status, 200, "{:?}", t.body);
    }
    let bad = tpp
        .exchange_code("no-such-code", &Pkce::new())
        .await
        .unwrap();
    assert_eq!(bad.status, 400, "{:?}", bad.body);

    // Metering is written off the request path: poll until the calls are visible.
    let mut page = dev.get(&format!("/portal/orgs/{org}/usage")).await;
    for _ in 0..40 {
        if page.html.contains(&format!("<code>{client_id}</code>"))
            && page.html.contains("id=\"usage-calls\">6<")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        page = dev.get(&format!("/portal/orgs/{org}/usage")).await;
    }
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    // PAR, the code exchange, three client-credentials tokens, one refusal.
    assert!(page.html.contains("id=\"usage-calls\">6<"), "{}", page.html);
    assert!(
        page.html.contains("id=\"usage-errors\">1 (16.7 %)<"),
        "{}",
        page.html
    );
    assert!(page.html.contains(&format!(
        "<code>{client_id}</code></td><td>sandbox</td><td>6</td><td>5</td>"
    )));
    assert!(
        page.html
            .contains("<code>POST /token</code></td><td>5</td><td>1</td>"),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("<code>POST /par</code></td><td>1</td><td>0</td>"),
        "{}",
        page.html
    );
    assert!(page.html.contains("<svg") && page.html.contains("role=\"img\""));
    assert!(page.html.contains("Usage statement for"));

    // Every call as CSV, with the route template, not the raw path.
    let csv = dev
        .get(&format!("/portal/orgs/{org}/usage.csv?days=1"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    let rows: Vec<&str> = csv
        .html
        .lines()
        .filter(|l| l.contains(&client_id))
        .collect();
    assert_eq!(rows.len(), 6, "{}", csv.html);
    assert_eq!(rows.iter().filter(|l| l.contains("/token")).count(), 5);
    let stmt = dev.get(&format!("/portal/orgs/{org}/statement.csv")).await;
    assert_eq!(stmt.status, StatusCode::OK);
    assert!(stmt.html.contains(&client_id), "{}", stmt.html);
    let bad_month = dev
        .get(&format!("/portal/orgs/{org}/statement.csv?month=2026-13"))
        .await;
    assert_eq!(bad_month.status, StatusCode::BAD_REQUEST);

    // Another developer, not a member, sees nothing of it.
    let other = DevAgent::signup(&p, "usage-outsider").await;
    for path in [
        format!("/portal/orgs/{org}/usage"),
        format!("/portal/orgs/{org}/usage.csv"),
        format!("/portal/orgs/{org}/statement.csv"),
    ] {
        let r = other.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!r.html.contains(&client_id));
    }
    // Signed out: to the sign-in page.
    let anon = p
        .customer()
        .get(&format!("/portal/orgs/{org}/usage"))
        .await
        .unwrap();
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    p.finish().await;
}

// ---------- sandbox event triggers ----------

mod triggers {
    use super::*;
    use crate::events as ev;
    use crate::payments as pay;
    use authz_store::{EVENT_RESOURCE_UPDATE, EVENT_TRANSACTION_CREATED};
    use reqwest::Method;
    use wekeza_tests::{TestPlatform, query_param};

    async fn spawn() -> TestPlatform {
        TestPlatform::spawn_with(|c| {
            c.events_retry_base_ms = 100;
            c.events_poll_interval_ms = 50;
            c.events_delivery_timeout_ms = 2000;
        })
        .await
    }

    /// An org with an owner, a viewer, and an app (generated keys) whose kit's TPP is
    /// subscribed to `types` at `path` on the receiver.
    struct Setup {
        owner: DevAgent,
        viewer: DevAgent,
        org: String,
        kit: Kit,
        tpp: Tpp,
    }

    async fn setup(p: &TestPlatform, who: &str, port: u16, path: &str, types: &[&str]) -> Setup {
        let cb = format!("{}/sandbox/callback", p.kit.issuer);
        let owner = DevAgent::signup(p, &format!("{who}-own")).await;
        let viewer = DevAgent::signup(p, &format!("{who}-view")).await;
        let org = owner.create_org(&format!("{who} Ltd")).await;
        owner
            .post(
                &format!("/portal/orgs/{org}/members"),
                &[("invitee", &format!("{who}-view")), ("role", "viewer")],
            )
            .await;
        let viewer = viewer.relogin(p).await;
        let r = owner
            .create_app(
                &org,
                &app_form(
                    "Hooks",
                    &cb,
                    &[("auth_method", "private_key_jwt"), ("keys", "generate")],
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.html);
        let (_, kit) = save_kit(p, &kit_from_secrets_page(&r.html), &[]);
        let tpp = tpp_of(p, &kit).await;
        let mut data = json!({"Version": "4.0",
            "CallbackUrl": format!("https://localhost:{port}{path}"), "EventTypes": types});
        if types.is_empty() {
            data.as_object_mut().unwrap().remove("EventTypes");
        }
        let r = ev::call(
            &tpp,
            Method::POST,
            &ev::rs(p, "/open-banking/v4.0/events/event-subscriptions"),
            Some(&json!({ "Data": data })),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        Setup {
            owner,
            viewer,
            org,
            kit,
            tpp,
        }
    }

    /// An account-access consent of the app, authorised by the kit's own test customer
    /// for `account`.
    async fn ais_consent(p: &TestPlatform, s: &Setup, account: &str) {
        let body = json!({"Data": {"Permissions": ["ReadAccountsDetail", "ReadTransactionsDetail",
            "ReadTransactionsCredits", "ReadTransactionsDebits"],
            "ExpirationDateTime": "2099-01-01T00:00:00Z"}, "Risk": {}});
        let r = ev::call(
            &s.tpp,
            Method::POST,
            &ev::rs(p, "/open-banking/v4.0/aisp/account-access-consents"),
            Some(&body),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
        let claims =
            json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}})
                .to_string();
        let pkce = Pkce::new();
        let extra = [("scope", "openid accounts"), ("claims", claims.as_str())];
        let par = s.tpp.par(&pkce, "st-tr", "n-tr", &extra).await.unwrap();
        assert_eq!(par.status, 201, "{:?}", par.body);
        let agent = p.customer();
        let login = agent
            .open(&s.tpp.authorize_url(par.str("request_uri").unwrap()))
            .await
            .unwrap();
        p.clock.advance(30);
        let c = &s.kit.customer;
        let otp = totp(&c.totp_secret, p.clock.now()).unwrap();
        let page = agent
            .sign_in(&login, &c.username, &c.password, &otp)
            .await
            .unwrap();
        let back = agent
            .decide_accounts(&page, true, &[account])
            .await
            .unwrap();
        let code = query_param(&back, "code").expect("code");
        let t = s.tpp.exchange_code(&code, &pkce).await.unwrap();
        assert_eq!(t.status, 200, "{:?}", t.body);
    }

    fn audit_rows(html: &str, action: &str) -> usize {
        html.matches(action).count()
    }

    #[tokio::test]
    async fn a_transaction_arrives_from_the_portal_and_the_app_hears_of_it() {
        let p = spawn().await;
        let inbox = Arc::new(ev::Inbox::default());
        let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
        let keys = ev::published_keys(&p).await;
        let s = setup(&p, "txn", rx.port, "/t", &[EVENT_TRANSACTION_CREATED]).await;
        let alice = pay::accounts_of(&p, "alice");
        let acct = &alice[0].id;
        let bob = pay::accounts_of(&p, "bob");
        ais_consent(&p, &s, acct).await;
        let url = format!("/portal/orgs/{}/sandbox/incoming", s.org);
        let page = s.owner.get(&format!("/portal/orgs/{}", s.org)).await;
        assert!(
            page.html.contains(&format!("<option value=\"{acct}\"")),
            "the test customers' accounts are offered"
        );
        assert!(
            !page
                .html
                .contains(&format!("<option value=\"{}\"", bob[0].id))
        );
        let before = pay::balance(&p, acct).await;
        let bob_before = pay::balance(&p, &bob[0].id).await;
        let form = [
            ("account_id", acct.as_str()),
            ("amount", "1234.50"),
            ("counterparty", "Acme Payroll"),
            ("reference", "SALARY-11"),
        ];

        // Refusals: viewer (and no form for them), no CSRF, an account the test customers
        // cannot see, bad amounts, a missing sender. Nothing posted by any.
        let vpage = s.viewer.get(&format!("/portal/orgs/{}", s.org)).await;
        assert!(!vpage.html.contains("sandbox/incoming"));
        assert_eq!(
            s.viewer.post(&url, &form).await.status,
            StatusCode::FORBIDDEN
        );
        let mut no_csrf: Vec<(&str, &str)> = vec![("csrf", "")];
        no_csrf.extend_from_slice(&form);
        let r = s.owner.web.post(&url, &no_csrf).await.unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.html);
        let r = s
            .owner
            .post(
                &url,
                &[
                    ("account_id", acct.as_str()),
                    ("account_id_typed", bob[0].id.as_str()),
                    ("amount", "10.00"),
                    ("counterparty", "X"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.html);
        assert!(r.html.contains("Unknown account"), "{}", r.html);
        // Alice's card is hers but not in the payment ledger: neither offered nor taken.
        let card = {
            let today = time::OffsetDateTime::from_unix_timestamp(p.clock.now())
                .unwrap()
                .date();
            let bank = core_bank::generate(&core_bank::GeneratorConfig::sandbox(today)).unwrap();
            let c = bank.customer_by_username("alice").unwrap();
            bank.accounts_of(&c.id)
                .into_iter()
                .find(|a| a.kind == core_bank::AccountKind::CreditCard)
                .expect("alice has a card")
                .id
        };
        assert!(!page.html.contains(&card));
        let r = s
            .owner
            .post(
                &url,
                &[
                    ("account_id", card.as_str()),
                    ("amount", "10.00"),
                    ("counterparty", "X"),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.html);
        for bad in [
            "0",
            "0.00",
            "-5",
            "10.001",
            "1e3",
            "",
            "12,50",
            "99999999999999",
        ] {
            let r = s
                .owner
                .post(
                    &url,
                    &[
                        ("account_id", acct.as_str()),
                        ("amount", bad),
                        ("counterparty", "X"),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.html);
            assert!(r.html.contains("Amount not accepted"), "{bad}: {}", r.html);
        }
        let r = s
            .owner
            .post(
                &url,
                &[
                    ("account_id", acct.as_str()),
                    ("amount", "1.00"),
                    ("counterparty", ""),
                ],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.html);
        assert_eq!(pay::balance(&p, acct).await, before);
        assert_eq!(pay::balance(&p, &bob[0].id).await, bob_before);
        assert!(inbox.sets("/t").is_empty());

        // The owner's transaction: one credit, its id in the notice, the app's signed alert.
        let r = s.owner.post(&url, &form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
        assert_eq!(pay::balance(&p, acct).await, before + 123_450);
        let page = s.owner.get(&format!("/portal/orgs/{}", s.org)).await;
        let notice = page
            .html
            .split("arrived on ")
            .nth(1)
            .expect("notice")
            .to_owned();
        let txn = notice
            .split("transaction ")
            .nth(1)
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(audit_rows(&page.html, "sandbox_transaction"), 1);
        ev::wait_for("the app's transaction alert", 20, || {
            !inbox.sets("/t").is_empty()
        })
        .await;
        let sets = inbox.sets("/t");
        assert_eq!(sets.len(), 1);
        let c = ev::verified(&sets[0], &keys);
        assert_eq!(c["aud"], s.tpp.client_id.as_str());
        assert_eq!(ev::event_type(&c), EVENT_TRANSACTION_CREATED);
        let d = &c["events"][EVENT_TRANSACTION_CREATED];
        assert_eq!(d["AccountId"], acct.as_str());
        assert_eq!(d["TransactionId"], txn.as_str(), "{d}");
        assert_eq!(d["CreditDebitIndicator"], "Credit");
        assert_eq!(d["Amount"], json!({"Amount": "1234.50", "Currency": "KES"}));
        assert_eq!(d["TransactionReference"], "SALARY-11");
        p.finish().await;
    }

    fn rid(c: &Value) -> String {
        c["events"][EVENT_RESOURCE_UPDATE]["subject"]["http://openbanking.org.uk/rid"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A payment consent of `tpp` to another bank, authorised by alice: (consent id,
    /// body, access token). Authorising moves the clock (fresh TOTP), so every consent is
    /// authorised before any payment runs: `…77` amounts then stay in clearing 30 s.
    async fn authorised(p: &TestPlatform, tpp: &Tpp, amount: &str) -> (String, Value, String) {
        let alice = pay::accounts_of(p, "alice");
        let body = pay::consent_body(amount, "ELSEWHERE-9", Some(&alice[0].number));
        let cid = pay::create_consent(p, tpp, &body).await;
        let t = pay::authorise(p, tpp, &cid, None).await;
        let at = t.str("access_token").unwrap().to_owned();
        (cid, body, at)
    }

    async fn execute(
        p: &TestPlatform,
        tpp: &Tpp,
        (cid, body, at): &(String, Value, String),
    ) -> String {
        let r = pay::call(
            tpp,
            Method::POST,
            &pay::url(p, "/domestic-payments"),
            at,
            Some(&pay::payment_body(cid, body)),
            Some(&pay::key()),
        )
        .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["Data"]["Status"], "ACSP");
        r.body["Data"]["DomesticPaymentId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn a_payment_settles_now_from_the_portal_only_in_its_own_org() {
        let p = spawn().await;
        let inbox = Arc::new(ev::Inbox::default());
        let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
        let keys = ev::published_keys(&p).await;
        let s = setup(&p, "settle", rx.port, "/s", &[EVENT_RESOURCE_UPDATE]).await;
        let other = setup(&p, "other", rx.port, "/o", &[EVENT_RESOURCE_UPDATE]).await;
        let a = authorised(&p, &s.tpp, "20.77").await;
        let b = authorised(&p, &other.tpp, "30.77").await;
        let mine = execute(&p, &s.tpp, &a).await;
        let theirs = execute(&p, &other.tpp, &b).await;
        let about = |path: &str, id: &str| {
            inbox
                .sets(path)
                .iter()
                .map(|x| ev::verified(x, &keys))
                .filter(|c| rid(c) == id)
                .count()
        };
        // The payment's own ACSP event first, so the next one is the settlement's.
        ev::wait_for("the ACSP event", 20, || about("/s", &mine) >= 1).await;
        let url = format!("/portal/orgs/{}/sandbox/settle", s.org);
        let page = s.owner.get(&format!("/portal/orgs/{}", s.org)).await;
        assert!(page.html.contains(&format!("data-payment=\"{mine}\"")));
        assert!(
            !page.html.contains(&theirs),
            "another org's payment is not listed"
        );

        // Refusals: viewer, no CSRF, another org's payment, an unknown id.
        let vpage = s.viewer.get(&format!("/portal/orgs/{}", s.org)).await;
        assert!(!vpage.html.contains("sandbox/settle"));
        assert_eq!(
            s.viewer.post(&url, &[("payment_id", &mine)]).await.status,
            StatusCode::FORBIDDEN
        );
        let r = s
            .owner
            .web
            .post(&url, &[("csrf", "nope"), ("payment_id", &mine)])
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        for id in [theirs.as_str(), "pmt-nothing"] {
            let r = s.owner.post(&url, &[("payment_id", id)]).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.html);
            assert!(r.html.contains("Unknown payment"));
        }
        let ledger = pay::ledger(&p);
        assert_eq!(
            ledger.find_payment(&mine).await.unwrap().unwrap().status,
            "ACSP"
        );
        assert_eq!(
            ledger.find_payment(&theirs).await.unwrap().unwrap().status,
            "ACSP"
        );

        // The owner settles theirs: ACSC at once, the TPP hears of it, audited; twice → 409.
        let r = s.owner.post(&url, &[("payment_id", &mine)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
        assert_eq!(
            ledger.find_payment(&mine).await.unwrap().unwrap().status,
            "ACSC"
        );
        assert_eq!(
            ledger.find_payment(&theirs).await.unwrap().unwrap().status,
            "ACSP"
        );
        let page = s.owner.get(&format!("/portal/orgs/{}", s.org)).await;
        assert!(
            page.html
                .contains(&format!("Payment {mine} left clearing: ACSC"))
        );
        assert_eq!(audit_rows(&page.html, "sandbox_payment_cleared"), 1);
        ev::wait_for("the settlement event", 20, || about("/s", &mine) >= 2).await;
        let r = s.owner.post(&url, &[("payment_id", &mine)]).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.html);
        assert_eq!(about("/o", &mine), 0);
        let check = ledger.ledger_check().await.unwrap();
        assert_eq!(check.entries_sum, 0);
        assert!(check.unbalanced_postings.is_empty() && check.balance_mismatches.is_empty());
        p.finish().await;
    }
}
