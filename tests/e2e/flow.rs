//! The happy paths, as a TPP and a customer see them.

use fapi_conformance::Pkce;
use serde_json::Value;
use wekeza_tests::{TestPlatform, jwt_claims, query_param};

#[tokio::test]
async fn code_flow_with_both_client_auth_methods() {
    let p = TestPlatform::spawn().await;
    for tpp in [&p.pkjwt, &p.mtls] {
        let pkce = Pkce::new();
        let back = p.authorize(tpp, &pkce, true).await;
        // RFC 9207: iss in the response; state echoed; 303 already checked by the agent.
        assert_eq!(
            query_param(&back, "iss").as_deref(),
            Some(p.kit.issuer.as_str())
        );
        assert_eq!(query_param(&back, "state").as_deref(), Some("st-123"));
        assert!(back.as_str().starts_with(&tpp.redirect_uri));
        let code = query_param(&back, "code").unwrap();
        assert!(code.len() >= 22, "code carries at least 128 bits");
        let t = tpp.exchange_code(&code, &pkce).await.unwrap();
        assert_eq!(t.status, 200, "{:?}", t.body);
        assert_eq!(t.headers.get("cache-control").unwrap(), "no-store");
        assert_eq!(t.str("token_type"), Some("Bearer"));

        let at = jwt_claims(t.str("access_token").unwrap());
        assert_eq!(at["cnf"]["x5t#S256"], Value::String(tpp.x5t_s256.clone()));
        assert_eq!(at["client_id"], tpp.client_id.as_str());
        assert_eq!(at["acr"], "urn:openbanking:psd2:sca");
        assert_eq!(at["consent_id"], t.body["consent_id"]);
        assert!(at["sub"].as_str().unwrap().starts_with("cust-"));

        let id = jwt_claims(t.str("id_token").unwrap());
        assert_eq!(id["aud"], tpp.client_id.as_str());
        assert_eq!(id["nonce"], "n-456");
        assert_eq!(id["acr"], "urn:openbanking:psd2:sca");
        assert!(id["amr"].as_array().unwrap().iter().any(|v| v == "otp"));
        assert!(id["auth_time"].is_i64());

        let ui = tpp
            .get_with_token(
                &tpp.endpoint("userinfo_endpoint"),
                t.str("access_token").unwrap(),
                true,
            )
            .await
            .unwrap();
        assert_eq!(ui.status, 200, "{:?}", ui.body);
        assert_eq!(ui.body["sub"], at["sub"]);

        // Refresh: same certificate, new access token, refresh token not rotated.
        let rt = t.str("refresh_token").unwrap();
        let r = tpp
            .token(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.str("refresh_token"), Some(rt));
        assert_ne!(r.str("access_token"), t.str("access_token"));
        assert_eq!(
            jwt_claims(r.str("access_token").unwrap())["consent_id"],
            at["consent_id"]
        );
    }
    p.finish().await;
}

#[tokio::test]
async fn client_credentials_and_introspection_and_revocation() {
    let p = TestPlatform::spawn().await;
    let t = p.mtls.client_credentials("accounts").await.unwrap();
    assert_eq!(t.status, 200, "{:?}", t.body);
    let at = t.str("access_token").unwrap().to_owned();
    assert_eq!(jwt_claims(&at)["cnf"]["x5t#S256"], p.mtls.x5t_s256.as_str());
    assert!(jwt_claims(&at).get("consent_id").is_none());

    let intro = p
        .mtls
        .post_form(
            &p.mtls.endpoint("introspection_endpoint"),
            &p.mtls.form(&[("token", &at)]),
            true,
        )
        .await
        .unwrap();
    assert_eq!(intro.body["active"], true);
    assert_eq!(intro.body["scope"], "accounts");

    // Another client may not learn about this token.
    let other = p
        .pkjwt
        .post_form(
            &p.pkjwt.endpoint("introspection_endpoint"),
            &p.pkjwt.form(&[("token", &at)]),
            true,
        )
        .await
        .unwrap();
    assert_eq!(other.body, serde_json::json!({"active": false}));

    let rev = p
        .mtls
        .post_form(
            &p.mtls.endpoint("revocation_endpoint"),
            &p.mtls.form(&[("token", &at)]),
            true,
        )
        .await
        .unwrap();
    assert_eq!(rev.status, 200);
    let intro = p
        .mtls
        .post_form(
            &p.mtls.endpoint("introspection_endpoint"),
            &p.mtls.form(&[("token", &at)]),
            true,
        )
        .await
        .unwrap();
    assert_eq!(intro.body["active"], false);
    p.finish().await;
}

#[tokio::test]
async fn discovery_lists_exactly_what_is_supported() {
    let p = TestPlatform::spawn().await;
    let d = &p.pkjwt.discovery;
    assert_eq!(d["issuer"], p.kit.issuer.as_str());
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        serde_json::json!(["private_key_jwt", "tls_client_auth"])
    );
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(d["require_pushed_authorization_requests"], true);
    assert!(
        !d["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "password" || g == "implicit")
    );
    for alg in d["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .unwrap()
    {
        assert!(["PS256", "ES256", "EdDSA"].contains(&alg.as_str().unwrap()));
    }
    let mtls_par = d["mtls_endpoint_aliases"]["pushed_authorization_request_endpoint"]
        .as_str()
        .unwrap();
    assert!(
        !mtls_par.starts_with(&p.kit.issuer),
        "mTLS endpoints live on their own listener"
    );
    // JWKS: distinct kids, public keys only.
    let jwks: Value = p
        .pkjwt
        .http_no_cert
        .get(d["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let mut kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    kids.sort();
    kids.dedup();
    assert_eq!(kids.len(), keys.len());
    assert!(
        keys.iter()
            .all(|k| k.get("d").is_none() && k.get("p").is_none())
    );
    p.finish().await;
}

#[tokio::test]
async fn every_documented_path_is_served_on_its_listener() {
    let p = TestPlatform::spawn().await;
    let doc: Value = p
        .pkjwt
        .http_no_cert
        .get(format!("{}/openapi.json", p.kit.issuer))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mtls_base = p
        .pkjwt
        .endpoint("token_endpoint")
        .trim_end_matches("/token")
        .to_owned();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 12);
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let on_mtls = op["servers"][0]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(":8444"));
            let base = if on_mtls { &mtls_base } else { &p.kit.issuer };
            let url = format!("{base}{path}");
            let req = match method.as_str() {
                "get" => p.pkjwt.http.get(&url),
                "put" => p.pkjwt.http.put(&url),
                "delete" => p.pkjwt.http.delete(&url),
                _ => p
                    .pkjwt
                    .http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded"),
            };
            let status = req.send().await.unwrap().status();
            assert_ne!(status, 404, "{method} {url} is documented but not served");
            assert_ne!(status, 405, "{method} {url} is documented but not allowed");
            assert!(status.as_u16() < 500, "{method} {url} answered {status}");
        }
    }
    p.finish().await;
}
