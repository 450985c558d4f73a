//! UK OB `x-jws-signature` on payment initiation (ADR 0017): request bodies signed by a
//! key the TPP registered, every rule refused with its `UK.OBIE.Signature.*` code and
//! nothing created; responses signed by the platform key in the AS JWKS, which never
//! verifies an access token.

use crate::events::published_keys;
use crate::payments::{
    accounts_of, authorise, balance, call, cc_token, consent_body, create_consent, key,
    payment_body, url,
};
use base64::Engine;
use fapi_conformance::Tpp;
use fapi_jose::detached::{self, CLAIM_IAT, CLAIM_ISS, CLAIM_TAN, Expected};
use fapi_jose::{Alg, SigningKey};
use reqwest::Method;
use serde_json::{Map, Value, json};
use wekeza_tests::{Reply, TestPlatform};

fn code(r: &Reply) -> String {
    r.body["Errors"][0]["ErrorCode"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn now(p: &TestPlatform) -> i64 {
    use authz_server::clock::Clock;
    p.clock.now()
}

/// A POST of exactly `body` with `sig` (none when `None`) and a fresh or given key.
async fn post(
    tpp: &Tpp,
    url: &str,
    token: &str,
    body: &[u8],
    sig: Option<&str>,
    idem: &str,
) -> (Reply, Vec<u8>) {
    let mut h = vec![("x-idempotency-key", idem)];
    if let Some(s) = sig {
        h.push(("x-jws-signature", s));
    }
    tpp.resource_raw(Method::POST, url, token, body, &h)
        .await
        .unwrap()
}

/// The response's `x-jws-signature` verifies over its exact body with the platform key
/// published in the AS JWKS, as the issuer, under the trust anchor.
/// `want` is the algorithm of the answer (ADR 0020): ES256 to an ES256-signed request,
/// PS256 to everything else.
async fn assert_signed_response(p: &TestPlatform, (r, raw): &(Reply, Vec<u8>), want: Alg) {
    let sig = r
        .headers
        .get("x-jws-signature")
        .unwrap_or_else(|| panic!("response {} is not signed", r.status))
        .to_str()
        .unwrap();
    let keys = published_keys(p).await;
    let issuer = p.kit.issuer.as_str();
    let v = detached::verify(
        sig,
        raw,
        &keys,
        &Expected {
            algs: &[want],
            issuers: &[issuer],
            trust_anchor: p.kit.jws_trust_anchor.as_deref().unwrap(),
            now: now(p),
            max_age_secs: 60,
            future_skew_secs: 5,
        },
    )
    .expect("response signature verifies against the published JWKS");
    match want {
        Alg::ES256 => assert!(v.kid.starts_with("jws-es256-"), "{}", v.kid),
        _ => assert!(
            v.kid.starts_with("jws-") && !v.kid.starts_with("jws-es256-"),
            "{}",
            v.kid
        ),
    }
    // Tampering with the response is detected.
    let mut other = raw.clone();
    other.push(b' ');
    assert!(
        detached::verify(
            sig,
            &other,
            &keys,
            &Expected {
                algs: &[want],
                issuers: &[issuer],
                trust_anchor: p.kit.jws_trust_anchor.as_deref().unwrap(),
                now: now(p),
                max_age_secs: 60,
                future_skew_secs: 5,
            },
        )
        .is_err()
    );
}

/// The algorithm our answer to a request carrying `sig` is signed with: the request's
/// when it names ES256, PS256 otherwise (unsigned, PS256, unreadable header).
fn answer_alg(sig: Option<&str>) -> Alg {
    match sig.and_then(detached::header_alg) {
        Some(Alg::ES256) => Alg::ES256,
        _ => Alg::PS256,
    }
}

/// Every bad signature of `body` by `tpp` the API must refuse, with its code.
fn bad_signatures(
    p: &TestPlatform,
    tpp: &Tpp,
    other: &Tpp,
    body: &[u8],
) -> Vec<(&'static str, Option<String>, Vec<u8>, &'static str)> {
    let me = tpp.signer.clone().expect("a signing key");
    let tan = tpp.jws_trust_anchor.clone();
    let t = now(p);
    let hdr = |edit: &dyn Fn(&mut Map<String, Value>)| {
        let mut h = detached::header(&me, &tpp.client_id, &tan, t);
        edit(&mut h);
        h
    };
    let sign = |h: &Map<String, Value>| detached::sign_with_header(&me, h, body).unwrap();
    let impostor = SigningKey::generate(me.alg(), me.kid()).unwrap();
    let others = other.signer.clone().expect("other TPP's key");
    let mut tampered = body.to_vec();
    let at = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[at] = b'9';
    vec![
        ("missing", None, body.to_vec(), "UK.OBIE.Signature.Missing"),
        (
            "malformed (attached payload)",
            Some(sign(&hdr(&|_| {})).replacen("..", ".e30.", 1)),
            body.to_vec(),
            "UK.OBIE.Signature.Malformed",
        ),
        (
            "a key the TPP did not register (same kid)",
            Some(detached::sign(&impostor, body, &tpp.client_id, &tan, t).unwrap()),
            body.to_vec(),
            "UK.OBIE.Signature.Invalid",
        ),
        (
            "another client's key",
            Some(detached::sign(&others, body, &tpp.client_id, &tan, t).unwrap()),
            body.to_vec(),
            "UK.OBIE.Signature.Invalid",
        ),
        (
            "tampered body",
            Some(sign(&hdr(&|_| {}))),
            tampered,
            "UK.OBIE.Signature.Invalid",
        ),
        (
            "crit without tan",
            Some(sign(&hdr(&|h| {
                h.insert("crit".into(), json!([CLAIM_IAT, CLAIM_ISS]));
            }))),
            body.to_vec(),
            "UK.OBIE.Signature.InvalidClaim",
        ),
        (
            "iss of another client",
            Some(sign(&hdr(&|h| {
                h.insert(CLAIM_ISS.into(), json!(other.client_id));
            }))),
            body.to_vec(),
            "UK.OBIE.Signature.InvalidClaim",
        ),
        (
            "another trust anchor",
            Some(sign(&hdr(&|h| {
                h.insert(CLAIM_TAN.into(), json!("openbanking.org.uk"));
            }))),
            body.to_vec(),
            "UK.OBIE.Signature.InvalidClaim",
        ),
        (
            "stale iat",
            Some(sign(&hdr(&|h| {
                h.insert(CLAIM_IAT.into(), json!(t - 3600));
            }))),
            body.to_vec(),
            "UK.OBIE.Signature.InvalidClaim",
        ),
        (
            "iat in the future",
            Some(sign(&hdr(&|h| {
                h.insert(CLAIM_IAT.into(), json!(t + 3600));
            }))),
            body.to_vec(),
            "UK.OBIE.Signature.InvalidClaim",
        ),
        (
            "no kid",
            Some(sign(&hdr(&|h| {
                h.remove("kid");
            }))),
            body.to_vec(),
            "UK.OBIE.Signature.MissingClaim",
        ),
    ]
}

async fn consent_signatures(tpp: &Tpp, other: &Tpp, p: &TestPlatform) {
    let bob = accounts_of(p, "bob");
    let body = serde_json::to_vec(&consent_body("12.50", &bob[0].number, None)).unwrap();
    let target = url(p, "/domestic-payment-consents");
    let cc = cc_token(tpp, "payments").await;
    for (what, sig, sent, want) in bad_signatures(p, tpp, other, &body) {
        let k = key();
        let rr = post(tpp, &target, &cc, &sent, sig.as_deref(), &k).await;
        let r = &rr.0;
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
        assert_eq!(code(r), want, "{what}: {:?}", r.body);
        assert_eq!(r.body["Errors"][0]["Path"], "x-jws-signature", "{what}");
        assert_signed_response(p, &rr, answer_alg(sig.as_deref())).await;
        // Nothing was created under that key: the same key with another (validly
        // signed) body is a new consent, not "key used with another request".
        let fresh = serde_json::to_vec(&consent_body("12.51", &bob[0].number, None)).unwrap();
        let sig = tpp.jws_signature(&fresh).unwrap();
        let (ok, _) = post(tpp, &target, &cc, &fresh, Some(&sig), &k).await;
        assert_eq!(ok.status, 201, "{what}: the key was taken: {:?}", ok.body);
    }
    // Valid: created, and the response is signed.
    let sig = tpp.jws_signature(&body).unwrap();
    let k = key();
    let rr = post(tpp, &target, &cc, &body, Some(&sig), &k).await;
    let r = &rr.0;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "AWAU");
    // Answered in kind: the TPP's own algorithm.
    assert_signed_response(p, &rr, tpp.signer.as_ref().unwrap().alg()).await;
    // GET responses of the payment API are signed as well.
    let id = r.body["Data"]["ConsentId"].as_str().unwrap();
    let g = tpp
        .resource_raw(
            Method::GET,
            &url(p, &format!("/domestic-payment-consents/{id}")),
            &cc,
            b"",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(g.0.status, 200);
    assert_signed_response(p, &g, Alg::PS256).await;
}

#[tokio::test]
async fn consent_requests_must_carry_a_valid_signature_and_responses_are_signed() {
    let p = TestPlatform::spawn().await;
    // PS256 (a tls_client_auth TPP's signing key) and ES256 (a private_key_jwt TPP's).
    assert_eq!(p.mtls.signer.as_ref().unwrap().alg(), Alg::PS256);
    assert_eq!(p.pkjwt.signer.as_ref().unwrap().alg(), Alg::ES256);
    consent_signatures(&p.mtls, &p.pkjwt, &p).await;
    consent_signatures(&p.pkjwt, &p.mtls, &p).await;
    p.finish().await;
}

#[tokio::test]
async fn payment_requests_must_carry_a_valid_signature_and_nothing_moves_otherwise() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.pkjwt;
    let alice = accounts_of(&p, "alice");
    let bob = accounts_of(&p, "bob");
    let (from, to) = (&alice[0], &bob[0]);
    let consent = consent_body("31.00", &to.number, Some(&from.number));
    let id = create_consent(&p, tpp, &consent).await;
    let t = authorise(&p, tpp, &id, None).await;
    let at = t.str("access_token").unwrap().to_owned();
    let body = serde_json::to_vec(&payment_body(&id, &consent)).unwrap();
    let target = url(&p, "/domestic-payments");
    let before = balance(&p, &from.id).await;
    for (what, sig, sent, want) in bad_signatures(&p, tpp, &p.mtls, &body) {
        let (r, _) = post(tpp, &target, &at, &sent, sig.as_deref(), &key()).await;
        assert_eq!(r.status, 400, "{what}: {:?}", r.body);
        assert_eq!(code(&r), want, "{what}: {:?}", r.body);
        assert_eq!(balance(&p, &from.id).await, before, "{what}: money moved");
    }
    let cc = cc_token(tpp, "payments").await;
    let c = call(
        tpp,
        Method::GET,
        &url(&p, &format!("/domestic-payment-consents/{id}")),
        &cc,
        None,
        None,
    )
    .await;
    assert_eq!(c.body["Data"]["Status"], "AUTH", "still unused");

    let sig = tpp.jws_signature(&body).unwrap();
    let k = key();
    let rr = post(tpp, &target, &at, &body, Some(&sig), &k).await;
    let r = &rr.0;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "ACSC");
    assert_signed_response(&p, &rr, Alg::ES256).await;
    assert_eq!(balance(&p, &from.id).await, before - 3100);
    // The idempotent replay (signed again) answers the original, signed.
    let sig2 = tpp.jws_signature(&body).unwrap();
    let again = post(tpp, &target, &at, &body, Some(&sig2), &k).await;
    assert_eq!(again.0.status, 201);
    assert_eq!(
        again.0.body["Data"]["DomesticPaymentId"],
        r.body["Data"]["DomesticPaymentId"]
    );
    assert_signed_response(&p, &again, Alg::ES256).await;
    assert_eq!(balance(&p, &from.id).await, before - 3100);
    p.finish().await;
}

/// The response-signing keys (PS256 and ES256) are published but never accepted for
/// access tokens: a client-credentials token re-signed with either is refused.
#[tokio::test]
async fn the_response_signing_keys_cannot_mint_access_tokens() {
    let p = TestPlatform::spawn().await;
    let tpp = &p.mtls;
    let cc = cc_token(tpp, "payments").await;
    let target = url(&p, "/domestic-payment-consents/pdc-x");
    let ok = call(tpp, Method::GET, &target, &cc, None, None).await;
    assert_eq!(ok.status, 400, "the real token works: {:?}", ok.body);
    let claims = wekeza_tests::jwt_claims(&cc);
    let published = published_keys(&p).await;
    for (dir, alg) in [("jws", Alg::PS256), ("jws-es256", Alg::ES256)] {
        let file: Value = serde_json::from_slice(
            &std::fs::read(p.dir.join("keys").join(dir).join("signing.json")).unwrap(),
        )
        .unwrap();
        let der = base64::engine::general_purpose::STANDARD
            .decode(file["pkcs8"].as_str().unwrap())
            .unwrap();
        let key = SigningKey::from_pkcs8(alg, file["kid"].as_str().unwrap(), &der).unwrap();
        assert!(
            published.contains(&key.public_jwk()),
            "{dir}: published in the JWKS"
        );
        let forged = key.sign_jwt(Some("at+jwt"), &claims).unwrap();
        let r = call(tpp, Method::GET, &target, &forged, None, None).await;
        assert_eq!(r.status, 401, "{dir}: {:?}", r.body);
    }
    p.finish().await;
}

/// With `jws_signature_required = false` an unsigned request passes, a bad signature is
/// still refused; a configured trust anchor reaches the kit and is the one enforced.
#[tokio::test]
async fn optional_signatures_still_refuse_bad_ones() {
    let p = TestPlatform::spawn_with(|c| {
        c.jws_signature_required = false;
        c.jws_trust_anchor = "ta.wekeza.example".into();
    })
    .await;
    let tpp = &p.mtls;
    assert_eq!(p.kit.jws_trust_anchor.as_deref(), Some("ta.wekeza.example"));
    assert_eq!(tpp.jws_trust_anchor, "ta.wekeza.example");
    let bob = accounts_of(&p, "bob");
    let body = serde_json::to_vec(&consent_body("5.00", &bob[0].number, None)).unwrap();
    let target = url(&p, "/domestic-payment-consents");
    let cc = cc_token(tpp, "payments").await;
    let (r, _) = post(tpp, &target, &cc, &body, None, &key()).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut tampered = body.clone();
    tampered[body.iter().position(|b| *b == b'5').unwrap()] = b'6';
    let sig = tpp.jws_signature(&body).unwrap();
    let (r, _) = post(tpp, &target, &cc, &tampered, Some(&sig), &key()).await;
    assert_eq!(r.status, 400);
    assert_eq!(code(&r), "UK.OBIE.Signature.Invalid");
    let (r, _) = post(tpp, &target, &cc, &body, Some(&sig), &key()).await;
    assert_eq!(
        r.status, 201,
        "signed under the configured anchor: {:?}",
        r.body
    );
    let key_ = tpp.signer.clone().unwrap();
    let default_tan = detached::sign(
        &key_,
        &body,
        &tpp.client_id,
        "directory.sandbox.wekeza.test",
        now(&p),
    )
    .unwrap();
    let (r, _) = post(tpp, &target, &cc, &body, Some(&default_tan), &key()).await;
    assert_eq!(code(&r), "UK.OBIE.Signature.InvalidClaim", "{:?}", r.body);
    p.finish().await;
}
