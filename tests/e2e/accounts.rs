//! Account information end to end: a TPP creates an account-access consent (or asks for
//! one in `authorization_details`), the customer picks accounts, and the resource server
//! serves exactly those accounts, over real mTLS / DPoP, until the consent ends.

use authz_server::clock::Clock;
use fapi_conformance::browser::Customer;
use fapi_conformance::{Pkce, Tpp};
use reqwest::Method;
use serde_json::{Value, json};
use wekeza_tests::{Reply, TestPlatform, jwt_claims, query_param};

const AISP: &str = "/open-banking/v4.0/aisp";

fn rs(p: &TestPlatform, path: &str) -> String {
    format!(
        "{}{AISP}{path}",
        p.kit.resource_base_url.trim_end_matches('/')
    )
}

fn consent_body(permissions: &[&str]) -> Value {
    json!({
        "Data": {
            "Permissions": permissions,
            "ExpirationDateTime": "2099-01-01T00:00:00Z",
            "TransactionFromDateTime": "2020-01-01T00:00:00Z",
            "TransactionToDateTime": "2099-01-01T00:00:00Z"
        },
        "Risk": {}
    })
}

const READ_ALL: &[&str] = &[
    "ReadAccountsDetail",
    "ReadBalances",
    "ReadTransactionsDetail",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
];

async fn cc_token(tpp: &Tpp) -> String {
    let t = if tpp.uses_dpop() {
        tpp.client_credentials_dpop("accounts").await.unwrap()
    } else {
        tpp.client_credentials("accounts").await.unwrap()
    };
    assert_eq!(t.status, 200, "{:?}", t.body);
    t.str("access_token").unwrap().to_owned()
}

async fn call(tpp: &Tpp, method: Method, url: &str, token: &str, body: Option<&Value>) -> Reply {
    tpp.resource(method, url, token, body).await.unwrap()
}

/// POST /account-access-consents; the new consent id.
async fn create_intent(p: &TestPlatform, tpp: &Tpp, permissions: &[&str]) -> String {
    let cc = cc_token(tpp).await;
    let r = call(
        tpp,
        Method::POST,
        &rs(p, "/account-access-consents"),
        &cc,
        Some(&consent_body(permissions)),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "AWAU");
    r.body["Data"]["ConsentId"].as_str().unwrap().to_owned()
}

async fn consent_status(p: &TestPlatform, tpp: &Tpp, id: &str) -> Reply {
    let cc = cc_token(tpp).await;
    call(
        tpp,
        Method::GET,
        &rs(p, &format!("/account-access-consents/{id}")),
        &cc,
        None,
    )
    .await
}

fn intent_claims(id: &str) -> String {
    json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}}).to_string()
}

/// PAR with `extra`, then sign the customer in; the consent page.
async fn to_consent_page(
    p: &TestPlatform,
    tpp: &Tpp,
    pkce: &Pkce,
    extra: &[(&str, &str)],
) -> (Customer, fapi_conformance::browser::Page) {
    let par = if tpp.uses_dpop() {
        tpp.par_dpop(pkce, "st-ob", "n-ob", extra).await.unwrap()
    } else {
        tpp.par(pkce, "st-ob", "n-ob", extra).await.unwrap()
    };
    assert_eq!(par.status, 201, "PAR: {:?}", par.body);
    let url = tpp.authorize_url(par.str("request_uri").unwrap());
    let customer = p.customer();
    let login = customer.open(&url).await.unwrap();
    let c = &p.kit.customer;
    let otp = p.fresh_otp();
    let page = customer
        .sign_in(&login, &c.username, &c.password, &otp)
        .await
        .unwrap();
    (customer, page)
}

/// Approve sharing `accounts` and exchange the code.
async fn approve(
    tpp: &Tpp,
    customer: &Customer,
    page: &fapi_conformance::browser::Page,
    pkce: &Pkce,
    accounts: &[&str],
) -> Reply {
    let back = customer
        .decide_accounts(page, true, accounts)
        .await
        .unwrap();
    let code = query_param(&back, "code").expect("code");
    let t = if tpp.uses_dpop() {
        tpp.exchange_code_dpop(&code, pkce).await.unwrap()
    } else {
        tpp.exchange_code(&code, pkce).await.unwrap()
    };
    assert_eq!(t.status, 200, "{:?}", t.body);
    t
}

fn account_ids(r: &Reply) -> Vec<String> {
    r.body["Data"]["Account"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["AccountId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn ob_error_code(r: &Reply) -> String {
    r.body["Errors"][0]["ErrorCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn intent_flow_serves_exactly_the_picked_accounts() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let id = create_intent(&p, tpp, READ_ALL).await;
    let pkce = Pkce::new();
    let (customer, page) = to_consent_page(
        &p,
        tpp,
        &pkce,
        &[
            ("scope", "openid accounts"),
            ("claims", &intent_claims(&id)),
        ],
    )
    .await;
    // The page says what is asked, in words, and offers the customer's accounts.
    assert!(
        page.html.contains("id=\"consent-permissions\""),
        "{}",
        page.html
    );
    assert!(page.html.contains("The balances of the accounts you pick"));
    assert!(page.html.contains("id=\"transaction-window\""));
    let offered = page.account_choices();
    assert!(
        offered.len() >= 2,
        "alice holds several accounts: {offered:?}"
    );
    let picked = offered[0].as_str();

    let t = approve(tpp, &customer, &page, &pkce, &[picked]).await;
    let at = t.str("access_token").unwrap().to_owned();
    assert_eq!(jwt_claims(&at)["consent_id"], id.as_str());
    let idt = jwt_claims(t.str("id_token").unwrap());
    assert_eq!(idt["openbanking_intent_id"], id.as_str());

    let st = consent_status(&p, tpp, &id).await;
    assert_eq!(st.status, 200, "{:?}", st.body);
    assert_eq!(st.body["Data"]["Status"], "AUTH");

    let accounts = call(tpp, Method::GET, &rs(&p, "/accounts"), &at, None).await;
    assert_eq!(accounts.status, 200, "{:?}", accounts.body);
    assert_eq!(account_ids(&accounts), vec![picked.to_owned()]);
    assert!(accounts.headers.contains_key("x-fapi-interaction-id"));

    let b = call(
        tpp,
        Method::GET,
        &rs(&p, &format!("/accounts/{picked}/balances")),
        &at,
        None,
    )
    .await;
    assert_eq!(b.status, 200, "{:?}", b.body);
    let all_balances = call(tpp, Method::GET, &rs(&p, "/balances"), &at, None).await;
    assert_eq!(all_balances.status, 200);
    for bal in all_balances.body["Data"]["Balance"].as_array().unwrap() {
        assert_eq!(
            bal["AccountId"], picked,
            "only the picked account's balances"
        );
    }
    let tx = call(
        tpp,
        Method::GET,
        &rs(&p, &format!("/accounts/{picked}/transactions")),
        &at,
        None,
    )
    .await;
    assert_eq!(tx.status, 200, "{:?}", tx.body);

    // Another of alice's accounts, not picked: refused.
    let other = offered[1].as_str();
    let r = call(
        tpp,
        Method::GET,
        &rs(&p, &format!("/accounts/{other}/balances")),
        &at,
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // A permission not granted (beneficiaries): refused.
    let r = call(
        tpp,
        Method::GET,
        &rs(&p, &format!("/accounts/{picked}/beneficiaries")),
        &at,
        None,
    )
    .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // The authorised intent cannot be used for a second authorization.
    let again = tpp
        .par(
            &Pkce::new(),
            "s",
            "n",
            &[
                ("scope", "openid accounts"),
                ("claims", &intent_claims(&id)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(again.status, 400, "{:?}", again.body);
    p.finish().await;
}

#[tokio::test]
async fn the_resource_server_enforces_the_binding_and_the_header_rules() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.pkjwt;
    let id = create_intent(&p, tpp, READ_ALL).await;
    let pkce = Pkce::new();
    let (customer, page) = to_consent_page(
        &p,
        tpp,
        &pkce,
        &[
            ("scope", "openid accounts"),
            ("claims", &intent_claims(&id)),
        ],
    )
    .await;
    let picked = page.account_choices()[0].clone();
    let t = approve(tpp, &customer, &page, &pkce, &[&picked]).await;
    let at = t.str("access_token").unwrap();
    let url = rs(&p, "/accounts");

    assert_eq!(
        tpp.get_with_token(&url, at, true).await.unwrap().status,
        200
    );
    // Another TPP's certificate: the token is bound to pkjwt's.
    let r = p.mtls.get_with_token(&url, at, true).await.unwrap();
    assert_eq!(r.status, 401, "{:?}", r.body);
    // No certificate at all.
    let r = tpp.get_with_token(&url, at, false).await.unwrap();
    assert_eq!(r.status, 401, "{:?}", r.body);
    // The token in the query string instead of the header.
    let r = tpp
        .get_with_token(&format!("{url}?access_token={at}"), "x", true)
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["Errors"][0]["Path"], "access_token");
    // A client-credentials token is no customer's consent.
    let cc = cc_token(tpp).await;
    let r = tpp.get_with_token(&url, &cc, true).await.unwrap();
    assert!(matches!(r.status.as_u16(), 401 | 403), "{:?}", r.body);
    // An authorization-code token cannot manage consents.
    let r = call(
        tpp,
        Method::GET,
        &rs(&p, &format!("/account-access-consents/{id}")),
        at,
        None,
    )
    .await;
    assert!(matches!(r.status.as_u16(), 401 | 403), "{:?}", r.body);
    // Another TPP cannot see or delete this consent.
    let r = consent_status(&p, &p.mtls, &id).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(ob_error_code(&r), "UK.OBIE.Resource.NotFound");
    p.finish().await;
}

#[tokio::test]
async fn tpp_deletion_stops_access_within_a_second() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let id = create_intent(&p, tpp, &["ReadAccountsBasic", "ReadBalances"]).await;
    let pkce = Pkce::new();
    let (customer, page) = to_consent_page(
        &p,
        tpp,
        &pkce,
        &[
            ("scope", "openid accounts"),
            ("claims", &intent_claims(&id)),
        ],
    )
    .await;
    let all = page.account_choices();
    let picked: Vec<&str> = all.iter().map(String::as_str).collect();
    let t = approve(tpp, &customer, &page, &pkce, &picked).await;
    let at = t.str("access_token").unwrap().to_owned();
    let url = rs(&p, "/balances");
    assert_eq!(call(tpp, Method::GET, &url, &at, None).await.status, 200);

    let cc = cc_token(tpp).await;
    let del = call(
        tpp,
        Method::DELETE,
        &rs(&p, &format!("/account-access-consents/{id}")),
        &cc,
        None,
    )
    .await;
    assert_eq!(del.status, 204, "{:?}", del.body);
    // The RS caches consents for at most one second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = call(tpp, Method::GET, &url, &at, None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(
        consent_status(&p, tpp, &id).await.body["Data"]["Status"],
        "CANC"
    );
    // The refresh token died with the consent.
    let rt = t.str("refresh_token").unwrap();
    let r = tpp
        .token(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    p.finish().await;
}

#[tokio::test]
async fn refusal_and_bad_picks() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    // Created first: this TPP's assertions use the wall clock, which the customer's
    // logins below move the platform clock away from.
    let foreign = create_intent(&p, &p.pkjwt, READ_ALL).await;
    // Refusal: access_denied to the TPP, RJCT on the consent.
    let id = create_intent(&p, tpp, READ_ALL).await;
    let pkce = Pkce::new();
    let (customer, page) = to_consent_page(
        &p,
        tpp,
        &pkce,
        &[
            ("scope", "openid accounts"),
            ("claims", &intent_claims(&id)),
        ],
    )
    .await;
    let back = customer.decide_accounts(&page, false, &[]).await.unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        consent_status(&p, tpp, &id).await.body["Data"]["Status"],
        "RJCT"
    );

    // Approving with no account shows the page again with an error; nothing is decided.
    let id = create_intent(&p, tpp, READ_ALL).await;
    let pkce = Pkce::new();
    let (customer, page) = to_consent_page(
        &p,
        tpp,
        &pkce,
        &[
            ("scope", "openid accounts"),
            ("claims", &intent_claims(&id)),
        ],
    )
    .await;
    let r = customer.post_decision(&page, true, &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.html.contains("id=\"error\""), "{}", r.html);
    assert_eq!(
        consent_status(&p, tpp, &id).await.body["Data"]["Status"],
        "AWAU"
    );
    // A tampered form naming an account alice does not hold: refused, nothing granted.
    let r = customer
        .post_decision(&page, true, &["acc-not-alices"])
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.html);
    assert!(r.location.is_none());
    assert_ne!(
        consent_status(&p, tpp, &id).await.body["Data"]["Status"],
        "AUTH"
    );

    // An intent of another TPP, or an unknown one, is refused at PAR.
    for bad in [foreign.as_str(), "aac-does-not-exist"] {
        let r = tpp
            .par(
                &Pkce::new(),
                "s",
                "n",
                &[
                    ("scope", "openid accounts"),
                    ("claims", &intent_claims(bad)),
                ],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert_eq!(r.error(), "invalid_request");
    }
    p.finish().await;
}

#[tokio::test]
async fn rich_authorization_requests_carry_the_consent() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.dpop;
    let details = json!([{
        "type": "account_information",
        "permissions": ["ReadAccountsBasic", "ReadBalances"],
        "expirationDateTime": "2099-01-01T00:00:00Z"
    }])
    .to_string();
    let pkce = Pkce::new();
    let (customer, page) =
        to_consent_page(&p, tpp, &pkce, &[("authorization_details", &details)]).await;
    let picked = page.account_choices()[0].clone();
    let t = approve(tpp, &customer, &page, &pkce, &[&picked]).await;
    let granted = &t.body["authorization_details"][0];
    assert_eq!(granted["type"], "account_information");
    assert_eq!(granted["accounts"], json!([picked]));
    assert_eq!(
        granted["permissions"],
        json!(["ReadAccountsBasic", "ReadBalances"])
    );
    let at = t.str("access_token").unwrap().to_owned();
    let claims = jwt_claims(&at);
    assert_eq!(claims["authorization_details"][0], *granted);
    assert_eq!(claims["consent_id"], granted["consentId"]);

    // DPoP-bound token at the RS: works with a fresh proof, not with a replayed one.
    let url = rs(&p, "/accounts");
    let ok = tpp.get_with_dpop(&url, &at).await.unwrap();
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(account_ids(&ok), vec![picked.clone()]);
    let proof = tpp.dpop_proof("GET", &url, Some(&at), None);
    let first = tpp
        .get_dpop_raw(&url, "DPoP", &at, std::slice::from_ref(&proof))
        .await
        .unwrap();
    assert_eq!(first.status, 200, "{:?}", first.body);
    let replay = tpp.get_dpop_raw(&url, "DPoP", &at, &[proof]).await.unwrap();
    assert_eq!(replay.status, 401, "{:?}", replay.body);
    // As a Bearer token (dropping the proof): refused.
    let r = tpp.get_dpop_raw(&url, "Bearer", &at, &[]).await.unwrap();
    assert_eq!(r.status, 401, "{:?}", r.body);

    // Unknown types and unregistered shapes: invalid_authorization_details at PAR.
    for bad in [
        json!([{"type": "payment_initiation"}]).to_string(),
        json!([{"type": "account_information", "permissions": ["ReadPAN"]}]).to_string(),
        "not json".to_owned(),
    ] {
        let r = tpp
            .par_dpop(&Pkce::new(), "s", "n", &[("authorization_details", &bad)])
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert_eq!(r.error(), "invalid_authorization_details", "{bad}");
    }
    p.finish().await;
}

#[tokio::test]
async fn an_expired_consent_stops_access_and_reads_expd() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let cc = cc_token(tpp).await;
    // Expires in one hour.
    let exp = time::OffsetDateTime::from_unix_timestamp(p.clock.now() + 3600)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let body = json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": exp}, "Risk": {}});
    let r = call(
        tpp,
        Method::POST,
        &rs(&p, "/account-access-consents"),
        &cc,
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["Data"]["ConsentId"].as_str().unwrap().to_owned();
    let pkce = Pkce::new();
    let (customer, page) = to_consent_page(
        &p,
        tpp,
        &pkce,
        &[
            ("scope", "openid accounts"),
            ("claims", &intent_claims(&id)),
        ],
    )
    .await;
    let picked = page.account_choices()[0].clone();
    let t = approve(tpp, &customer, &page, &pkce, &[&picked]).await;
    let url = rs(&p, "/accounts");
    // A token minted just before expiry is refused once the consent has expired.
    p.clock.advance(3600 - 120);
    let late = tpp
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t.str("refresh_token").unwrap()),
        ])
        .await
        .unwrap();
    assert_eq!(late.status, 200, "{:?}", late.body);
    let at = late.str("access_token").unwrap().to_owned();
    assert_eq!(call(tpp, Method::GET, &url, &at, None).await.status, 200);
    p.clock.advance(121);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = call(tpp, Method::GET, &url, &at, None).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let cc = cc_token(tpp).await;
    let st = call(
        tpp,
        Method::GET,
        &rs(&p, &format!("/account-access-consents/{id}")),
        &cc,
        None,
    )
    .await;
    assert_eq!(st.body["Data"]["Status"], "EXPD", "{:?}", st.body);
    p.finish().await;
}
