//! One payment authorisation journey for the end-to-end tests, whatever is authorised (a
//! domestic or file payment consent named as `openbanking_intent_id`, or an RFC 9396
//! `payment_initiation` entry): PAR (DPoP-bound when the TPP uses DPoP) → the customer
//! signs in and sees the consent page → decides → the code is exchanged for tokens.

use crate::{Reply, TestPlatform, query_param};
use fapi_conformance::browser::{Customer, Page};
use fapi_conformance::{Pkce, Tpp};

/// What the PAR asks the customer to authorise.
#[derive(Clone, Copy, Debug)]
pub enum Ask<'a> {
    /// A payment consent created at the resource server, by id (the intent path).
    Intent(&'a str),
    /// `authorization_details` (JSON text), recorded as a consent at PAR.
    Details(&'a str),
}

/// The `claims` parameter that names `id` as the essential `openbanking_intent_id`.
pub fn intent_claims(id: &str) -> String {
    serde_json::json!({"id_token": {"openbanking_intent_id": {"value": id, "essential": true}}})
        .to_string()
}

/// PAR for `ask` with `scope`; the reply, unchecked (tests of refusals read it).
pub async fn par(tpp: &Tpp, pkce: &Pkce, ask: Ask<'_>, scope: &str) -> Reply {
    let claims;
    let extra = match ask {
        Ask::Intent(id) => {
            claims = intent_claims(id);
            [("scope", scope), ("claims", claims.as_str())]
        }
        Ask::Details(d) => [("scope", scope), ("authorization_details", d)],
    };
    if tpp.uses_dpop() {
        tpp.par_dpop(pkce, "st-pay", "n-pay", &extra).await.unwrap()
    } else {
        tpp.par(pkce, "st-pay", "n-pay", &extra).await.unwrap()
    }
}

/// PAR for `ask` (scope `openid payments`, must be accepted), then `username` signs in with
/// the kit's password and `otp`: the consent page, whatever its status.
pub async fn consent_page_as(
    p: &TestPlatform,
    tpp: &Tpp,
    pkce: &Pkce,
    ask: Ask<'_>,
    username: &str,
    otp: &str,
) -> (Customer, Page) {
    let r = par(tpp, pkce, ask, "openid payments").await;
    assert_eq!(r.status, 201, "PAR: {:?}", r.body);
    sign_in_at(p, tpp, r.str("request_uri").unwrap(), username, || {
        otp.to_owned()
    })
    .await
}

/// `username` (with the kit's password) opens the authorization request pushed as
/// `request_uri` and signs in with the code `otp()` gives, asked for after the request is
/// opened (a fresh code steps the platform clock, which must not age the pushed request
/// first): the page that follows, whatever its status.
pub async fn sign_in_at(
    p: &TestPlatform,
    tpp: &Tpp,
    request_uri: &str,
    username: &str,
    otp: impl FnOnce() -> String,
) -> (Customer, Page) {
    let customer = p.customer();
    let login = customer
        .open(&tpp.authorize_url(request_uri))
        .await
        .unwrap();
    let page = customer
        .sign_in(&login, username, &p.kit.customer.password, &otp())
        .await
        .unwrap();
    (customer, page)
}

/// [`sign_in_at`] for the kit's customer with a fresh code.
pub async fn kit_customer_signs_in_at(
    p: &TestPlatform,
    tpp: &Tpp,
    request_uri: &str,
) -> (Customer, Page) {
    sign_in_at(p, tpp, request_uri, &p.kit.customer.username, || {
        p.fresh_otp()
    })
    .await
}

/// [`consent_page_as`] for the kit's customer with a fresh code (the page unchecked: tests
/// of refusals read it).
pub async fn consent_page(
    p: &TestPlatform,
    tpp: &Tpp,
    pkce: &Pkce,
    ask: Ask<'_>,
) -> (Customer, Page) {
    let otp = p.fresh_otp();
    consent_page_as(p, tpp, pkce, ask, &p.kit.customer.username, &otp).await
}

/// The code in `back` exchanged for tokens (with a DPoP proof when the TPP uses DPoP);
/// the exchange must succeed.
pub async fn exchange(tpp: &Tpp, back: &url::Url, pkce: &Pkce) -> Reply {
    let code = query_param(back, "code").expect("code");
    let t = if tpp.uses_dpop() {
        tpp.exchange_code_dpop(&code, pkce).await.unwrap()
    } else {
        tpp.exchange_code(&code, pkce).await.unwrap()
    };
    assert_eq!(t.status, 200, "{:?}", t.body);
    t
}

/// The whole journey: the kit's customer approves `ask`, paying from `from` when the page
/// asks for an account; the token reply.
pub async fn approve(p: &TestPlatform, tpp: &Tpp, ask: Ask<'_>, from: Option<&str>) -> Reply {
    let pkce = Pkce::new();
    let (customer, page) = consent_page(p, tpp, &pkce, ask).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let picked: Vec<&str> = from.into_iter().collect();
    let back = customer
        .decide_accounts(&page, true, &picked)
        .await
        .unwrap();
    exchange(tpp, &back, &pkce).await
}
