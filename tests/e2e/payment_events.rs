//! Payment events (issue 8): every payment status change reaches the TPP that owns the
//! payment as a signed `resource-update` SET, in order, written in the payment's own
//! transaction (so a replay or a refused attempt writes nothing). Uses the receiver and
//! subscription helpers of `events` and the payment helpers of `payments`.

use crate::events as ev;
use crate::payments as pay;
use authz_store::EVENT_RESOURCE_UPDATE;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The verified claims of every SET that arrived at `path`, in arrival order.
fn claims_at(inbox: &ev::Inbox, path: &str, keys: &[fapi_jose::Jwk]) -> Vec<Value> {
    inbox
        .sets(path)
        .iter()
        .map(|s| ev::verified(s, keys))
        .collect()
}

fn subject(c: &Value) -> &Value {
    &c["events"][EVENT_RESOURCE_UPDATE]["subject"]
}

fn rid(c: &Value) -> &str {
    subject(c)["http://openbanking.org.uk/rid"]
        .as_str()
        .unwrap_or_default()
}

/// Those of `claims` about resource `id`.
fn about<'a>(claims: &'a [Value], id: &str) -> Vec<&'a Value> {
    claims.iter().filter(|c| rid(c) == id).collect()
}

#[tokio::test]
async fn payment_status_changes_reach_the_owning_tpp_in_order_and_only_it() {
    let p = ev::spawn_fast().await;
    let inbox = Arc::new(ev::Inbox::default());
    let rx = ev::Receiver::start(&p, 0, inbox.clone()).await;
    let port = rx.port;
    // The paying TPP and another one, each with its own subscription.
    let tpp = &p.dpop;
    let other = &p.mtls;
    for (t, path) in [(tpp, "/mine"), (other, "/other")] {
        let s = ev::subscribe(&p, t, Some(&format!("https://localhost:{port}{path}"))).await;
        assert_eq!(s.status, 201, "{:?}", s.body);
    }
    let keys = ev::published_keys(&p).await;

    // A payment to another bank: ACSP now, ACSC when the clearing settles it (an amount
    // ending in .77 stays in the sandbox clearing for 30 s, so ACSP is seen first).
    let from = pay::accounts_of(&p, "alice")[0].clone();
    let body = pay::consent_body("12.77", "ELSEWHERE-7", Some(&from.number));
    let cid = pay::create_consent(&p, tpp, &body).await;
    let t = pay::authorise(&p, tpp, &cid, None).await;
    let at = t.str("access_token").unwrap().to_owned();
    let k = pay::key();
    let pay_body = pay::payment_body(&cid, &body);
    let pay_url = pay::url(&p, "/domestic-payments");
    let r = pay::call(tpp, Method::POST, &pay_url, &at, Some(&pay_body), Some(&k)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["Data"]["Status"], "ACSP");
    let pid = r.body["Data"]["DomesticPaymentId"]
        .as_str()
        .unwrap()
        .to_owned();
    ev::wait_for("the ACSP event", 20, || {
        let got = claims_at(&inbox, "/mine", &keys);
        !about(&got, &pid).is_empty()
    })
    .await;

    // The same request replayed (same key and body): the same payment, no new event. The
    // consent used again with a new key: refused and rolled back, no event either.
    let r2 = pay::call(tpp, Method::POST, &pay_url, &at, Some(&pay_body), Some(&k)).await;
    assert_eq!(r2.status, 201, "{:?}", r2.body);
    assert_eq!(r2.body["Data"]["DomesticPaymentId"], pid.as_str());
    let r3 = pay::call(
        tpp,
        Method::POST,
        &pay_url,
        &at,
        Some(&pay_body),
        Some(&pay::key()),
    )
    .await;
    assert_eq!(r3.status, 400, "{:?}", r3.body);
    // Several dispatcher rounds (50 ms each) for anything wrongly written to go out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cc = pay::cc_token(tpp, "payments").await;
    let g = pay::wait_status(&p, tpp, &cc, &pid, "ACSP").await;
    assert_eq!(g.body["Data"]["Status"], "ACSP", "not cleared yet");
    assert_eq!(
        about(&claims_at(&inbox, "/mine", &keys), &pid).len(),
        1,
        "one event for the one status so far"
    );

    // The clearing settles it: a second event.
    p.clock.advance(31);
    pay::wait_status(&p, tpp, &cc, &pid, "ACSC").await;
    ev::wait_for("the ACSC event", 20, || {
        let got = claims_at(&inbox, "/mine", &keys);
        about(&got, &pid).len() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mine = claims_at(&inbox, "/mine", &keys);
    let me = tpp.client_id.as_str();
    for c in &mine {
        assert_eq!(c["aud"], me, "{c}");
        assert_eq!(c["iss"], p.kit.issuer.as_str(), "{c}");
        assert_eq!(ev::event_type(c), EVENT_RESOURCE_UPDATE, "{c}");
    }
    let jtis: HashSet<&str> = mine.iter().map(|c| c["jti"].as_str().unwrap()).collect();
    assert_eq!(jtis.len(), mine.len(), "no event delivered twice");
    // The payment: exactly two events, ACSP's then ACSC's, each pointing at the payment.
    let payment = about(&mine, &pid);
    assert_eq!(payment.len(), 2, "{payment:?}");
    let link = pay::url(&p, &format!("/domestic-payments/{pid}"));
    for c in &payment {
        let s = subject(c);
        assert_eq!(s["http://openbanking.org.uk/rty"], "domestic-payment");
        assert_eq!(s["http://openbanking.org.uk/rlk"][0]["link"], link.as_str());
        assert_eq!(c["sub"], link.as_str());
    }
    let toe = |c: &Value| c["toe"].as_i64().unwrap();
    assert!(
        toe(payment[0]) < toe(payment[1]),
        "ACSP's event before ACSC's: {payment:?}"
    );
    // The payment consent: authorised, then consumed by the payment, both before the
    // payment's first event (same transaction as the payment, earlier in it).
    let consent = about(&mine, &cid);
    assert_eq!(consent.len(), 2, "{consent:?}");
    for c in &consent {
        let s = subject(c);
        assert_eq!(
            s["http://openbanking.org.uk/rty"],
            "domestic-payment-consent"
        );
        assert_eq!(
            s["http://openbanking.org.uk/rlk"][0]["link"],
            pay::url(&p, &format!("/domestic-payment-consents/{cid}")).as_str()
        );
    }
    let pos = |c: &Value| mine.iter().position(|m| m == c).unwrap();
    assert!(pos(consent[1]) < pos(payment[0]) && pos(payment[0]) < pos(payment[1]));
    assert_eq!(
        consent[1]["txn"], payment[0]["txn"],
        "consumption and payment: one transaction"
    );
    assert_eq!(mine.len(), 4, "nothing else: {mine:?}");

    // The other TPP's subscription works (its own consent's event arrives) but carries
    // nothing about this payment or its consent.
    let theirs = ev::create_intent(&p, other).await;
    ev::authorise(&p, other, &theirs).await;
    ev::wait_for("the other TPP's own event", 20, || {
        !inbox.sets("/other").is_empty()
    })
    .await;
    let got = claims_at(&inbox, "/other", &keys);
    assert!(
        got.iter()
            .all(|c| c["aud"] == other.client_id.as_str() && rid(c) == theirs),
        "{got:?}"
    );
    rx.stop().await;
    p.finish().await;
}
