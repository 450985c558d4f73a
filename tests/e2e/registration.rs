//! Dynamic client registration (RFC 7591 / 7592) over mTLS with software statements from
//! the sandbox directory, and the FAPI code flow with the registered client.

use authz_server::clock::Clock;
use fapi_conformance::kit::KitClient;
use fapi_conformance::{Pkce, Tpp};
use fapi_jose::{Alg, SigningKey};
use serde_json::{Value, json};
use wekeza_tests::{TestPlatform, query_param};

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Resp {
    pub(crate) fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

pub(crate) async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn endpoint(tpp: &Tpp) -> String {
    tpp.endpoint("registration_endpoint")
}

/// The kit as a developer reads it (fields the TPP library does not model yet).
fn kit_json(p: &TestPlatform) -> Value {
    let path = p.platform.as_ref().unwrap().kit_path.clone().unwrap();
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub(crate) async fn register(http: &reqwest::Client, tpp: &Tpp, body: &Value) -> Resp {
    send(http.post(endpoint(tpp)).json(body)).await
}

/// The sandbox directory's signing key (the test plays the directory).
fn directory(p: &TestPlatform) -> SigningKey {
    let jwk: Value = serde_json::from_slice(
        &std::fs::read(p.dir.join("keys").join("sandbox-directory.jwk.json")).unwrap(),
    )
    .unwrap();
    SigningKey::from_private_jwk(&jwk).unwrap()
}

fn statement_claims(p: &TestPlatform) -> Value {
    let now = p.clock.now();
    json!({
        "iss": "https://directory.sandbox.wekeza.test",
        "iat": now, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string(),
        "software_id": "sandbox-tpp-software", "software_client_name": "Sandbox Registered App",
        "software_redirect_uris": [format!("{}/sandbox/callback", p.kit.issuer)],
        "org_id": "sandbox-tpp-org", "org_name": "Wekeza Sandbox TPP",
        "software_roles": ["AISP", "PISP"],
    })
}

pub(crate) fn statement(p: &TestPlatform, overrides: Value) -> String {
    let mut c = statement_claims(p);
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    directory(p).sign_jwt(None, &c).unwrap()
}

/// A fresh ES256 client key: (public JWKS, path of the private JWK for the TPP helper).
fn client_key(p: &TestPlatform) -> (Value, std::path::PathBuf) {
    let k = SigningKey::generate(Alg::ES256, format!("dcr-{}", uuid::Uuid::new_v4())).unwrap();
    let path = p.dir.join(format!("{}.jwk.json", k.kid()));
    std::fs::write(
        &path,
        serde_json::to_vec(&k.to_private_jwk().unwrap()).unwrap(),
    )
    .unwrap();
    (
        json!({"keys": [serde_json::to_value(k.public_jwk()).unwrap()]}),
        path,
    )
}

pub(crate) fn pkjwt_body(p: &TestPlatform, ssa: &str) -> (Value, std::path::PathBuf) {
    let (jwks, path) = client_key(p);
    (
        json!({
            "software_statement": ssa,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks,
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "scope": "openid accounts payments",
            "id_token_signed_response_alg": "PS256",
        }),
        path,
    )
}

/// A TPP helper for a registered client, presenting the certificate of `like`.
async fn tpp_for(
    p: &TestPlatform,
    client_id: &str,
    method: &str,
    jwk: Option<std::path::PathBuf>,
    like: &str,
) -> Tpp {
    let base = p.kit.client(like).unwrap();
    let kc = KitClient {
        client_id: client_id.to_owned(),
        token_endpoint_auth_method: method.to_owned(),
        private_jwk: jwk,
        cert: base.cert.clone(),
        key: base.key.clone(),
        redirect_uri: format!("{}/sandbox/callback", p.kit.issuer),
        scope: "openid accounts".into(),
        sender_constraint: None,
        request_object_signing: false,
        response_mode: None,
        signing_jwk: None,
    };
    Tpp::from_kit(&p.kit, &kc).await.unwrap()
}

async fn full_flow(p: &TestPlatform, tpp: &Tpp) -> Value {
    let tokens = p.tokens(tpp).await;
    let at = tokens.str("access_token").unwrap().to_owned();
    let ui = tpp
        .get_with_token(&tpp.endpoint("userinfo_endpoint"), &at, true)
        .await
        .unwrap();
    assert_eq!(ui.status, 200, "userinfo: {:?}", ui.body);
    assert!(ui.body["sub"].is_string());
    tokens.body
}

#[tokio::test]
async fn kit_statement_registers_a_private_key_jwt_client_that_completes_the_flow() {
    let p = TestPlatform::spawn().await;
    let reg_ep = endpoint(&p.pkjwt);
    let kit = kit_json(&p);
    assert_eq!(
        reg_ep,
        format!("{}/register", kit["mtls_base_url"].as_str().unwrap()),
        "registration endpoint on the mTLS listener"
    );
    let ssa = p
        .kit
        .software_statement
        .clone()
        .expect("kit carries a statement");
    assert_eq!(kit["software_statement"], ssa.as_str());
    let jwks_file = kit["directory_jwks"]
        .as_str()
        .expect("kit names the directory JWKS");
    let dir: Value = serde_json::from_slice(&std::fs::read(jwks_file).unwrap()).unwrap();
    assert!(dir["keys"][0].get("d").is_none());
    let (body, jwk) = pkjwt_body(&p, &ssa);
    let r = register(&p.pkjwt.http, &p.pkjwt, &body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["client_id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["client_name"], "Sandbox Registered App");
    assert_eq!(r.body["software_id"], "sandbox-tpp-software");
    assert_eq!(r.body["token_endpoint_auth_method"], "private_key_jwt");
    assert_eq!(r.body["software_statement"], ssa.as_str());
    assert!(r.body["registration_access_token"].as_str().unwrap().len() >= 40);
    assert_eq!(
        r.body["registration_client_uri"],
        format!("{reg_ep}/{id}").as_str()
    );
    // The kit's statement is single use.
    let again = register(&p.pkjwt.http, &p.pkjwt, &pkjwt_body(&p, &ssa).0).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.error(), "invalid_software_statement");

    let tpp = tpp_for(&p, &id, "private_key_jwt", Some(jwk), "private_key_jwt").await;
    let tokens = full_flow(&p, &tpp).await;
    let id_token = wekeza_tests::jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["aud"], id.as_str());
    // Registered id_token_signed_response_alg is honoured.
    let header: Value = serde_json::from_slice(
        &fapi_jose::b64_decode(
            tokens["id_token"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "PS256");
    p.finish().await;
}

#[tokio::test]
async fn tls_client_auth_client_registers_with_its_own_certificate_subject() {
    let p = TestPlatform::spawn().await;
    let dn = kit_json(&p)["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == p.mtls.client_id.as_str())
        .and_then(|c| c["tls_client_auth_subject_dn"].as_str().map(str::to_owned))
        .unwrap();
    let body = |dn: &str| {
        json!({"software_statement": statement(&p, json!({})),
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": dn,
            "grant_types": ["authorization_code", "client_credentials"], "scope": "openid accounts"})
    };
    // Somebody else's certificate on the request: refused.
    let r = register(&p.pkjwt.http, &p.pkjwt, &body(&dn)).await;
    assert_eq!((r.status, r.error()), (400, "invalid_client_metadata"));
    // Missing subject.
    let mut b = body(&dn);
    b.as_object_mut()
        .unwrap()
        .remove("tls_client_auth_subject_dn");
    let r = register(&p.mtls.http, &p.mtls, &b).await;
    assert_eq!((r.status, r.error()), (400, "invalid_client_metadata"));
    // Malformed subject.
    let r = register(&p.mtls.http, &p.mtls, &body("this is not a DN")).await;
    assert_eq!((r.status, r.error()), (400, "invalid_client_metadata"));
    let r = register(&p.mtls.http, &p.mtls, &body(&dn)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["client_id"].as_str().unwrap();
    let tpp = tpp_for(&p, id, "tls_client_auth", None, "tls_client_auth").await;
    full_flow(&p, &tpp).await;
    let cc = tpp.client_credentials("accounts").await.unwrap();
    assert_eq!(cc.status, 200, "{:?}", cc.body);
    p.finish().await;
}

#[tokio::test]
async fn software_statement_rules() {
    let p = TestPlatform::spawn().await;
    let reg = |ssa: String| {
        let (b, _) = pkjwt_body(&p, &ssa);
        let (http, tpp) = (p.pkjwt.http.clone(), p.pkjwt.clone());
        async move { register(&http, &tpp, &b).await }
    };
    let now = p.clock.now();
    // No statement at all.
    let mut b = pkjwt_body(&p, "").0;
    b.as_object_mut().unwrap().remove("software_statement");
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    assert_eq!((r.status, r.error()), (400, "invalid_software_statement"));
    // Unsigned (alg none).
    let claims = fapi_jose::b64(statement_claims(&p).to_string().as_bytes());
    let none = format!("{}.{claims}.", fapi_jose::b64(br#"{"alg":"none"}"#));
    assert_eq!(reg(none).await.error(), "invalid_software_statement");
    // Signature broken.
    let good = statement(&p, json!({}));
    let mut parts: Vec<&str> = good.split('.').collect();
    let other_claims = fapi_jose::b64(br#"{"iss":"x"}"#);
    parts[1] = &other_claims;
    assert_eq!(
        reg(parts.join(".")).await.error(),
        "unapproved_software_statement"
    );
    // Expired, issued in the future, too old (max age 24 h).
    for (iat, exp) in [
        (now - 700, now - 1),
        (now + 600, now + 1200),
        (now - 25 * 3600, now + 600),
    ] {
        let r = reg(statement(&p, json!({"iat": iat, "exp": exp}))).await;
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_software_statement"),
            "{iat} {exp}"
        );
    }
    // Signed by a key that is not the directory's (same kid), or another issuer.
    let foreign = SigningKey::generate(Alg::ES256, directory(&p).kid()).unwrap();
    let r = reg(foreign.sign_jwt(None, &statement_claims(&p)).unwrap()).await;
    assert_eq!(
        (r.status, r.error()),
        (400, "unapproved_software_statement")
    );
    let r = reg(statement(&p, json!({"iss": "https://rogue.example"}))).await;
    assert_eq!(r.error(), "unapproved_software_statement");
    // EdDSA is a FAPI algorithm, but not one for statements.
    let ed = SigningKey::generate(Alg::EdDSA, "ed").unwrap();
    let r = reg(ed.sign_jwt(None, &statement_claims(&p)).unwrap()).await;
    assert_eq!(r.error(), "invalid_software_statement");
    // Missing claims.
    let r = reg(statement(&p, json!({"software_id": null}))).await;
    assert_eq!(r.error(), "invalid_software_statement");
    // Replay: the same statement twice.
    let ssa = statement(&p, json!({}));
    assert_eq!(reg(ssa.clone()).await.status, 201);
    let r = reg(ssa).await;
    assert_eq!((r.status, r.error()), (400, "invalid_software_statement"));
    // Conflicts with the statement are refused, not silently overridden.
    let mut b = pkjwt_body(&p, &statement(&p, json!({}))).0;
    b["client_name"] = json!("Another Name");
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    assert_eq!(r.error(), "invalid_client_metadata");
    let mut b = pkjwt_body(&p, &statement(&p, json!({"software_roles": ["AISP"]}))).0;
    b["scope"] = json!("openid payments");
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    assert_eq!(r.error(), "invalid_client_metadata");
    p.finish().await;
}

#[tokio::test]
async fn fapi_metadata_rules() {
    let p = TestPlatform::spawn().await;
    let cb = format!("{}/sandbox/callback", p.kit.issuer);
    let http_cb = cb.replace("https://", "http://");
    let frag = format!("{cb}#x");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"redirect_uris": [http_cb]}), "invalid_redirect_uri"),
        (json!({"redirect_uris": [frag]}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["https://elsewhere.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            json!({"token_endpoint_auth_method": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"id_token_signed_response_alg": "RS256"}),
            "invalid_client_metadata",
        ),
        (
            json!({"id_token_signed_response_alg": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"token_endpoint_auth_signing_alg": "RS256"}),
            "invalid_client_metadata",
        ),
        (
            json!({"request_object_signing_alg": "none"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["implicit"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (json!({"scope": "openid admin"}), "invalid_client_metadata"),
        (
            json!({"authorization_details_types": ["urn:openfinanceuae:account-access-consent:v1.0"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}]}}),
            "invalid_client_metadata",
        ),
        (
            json!({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}),
            "invalid_client_metadata",
        ),
        (json!({"jwks": null}), "invalid_client_metadata"),
        (
            json!({"jwks": null, "jwks_uri": "http://localhost/jwks"}),
            "invalid_client_metadata",
        ),
        // SSRF: cloud metadata and private ranges are never fetched, even in sandbox.
        (
            json!({"jwks": null, "jwks_uri": "https://169.254.169.254/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"jwks": null, "jwks_uri": "https://10.0.0.1/jwks"}),
            "invalid_client_metadata",
        ),
        (
            json!({"tls_client_certificate_bound_access_tokens": false}),
            "invalid_client_metadata",
        ),
    ];
    for (patch, want) in cases {
        let (mut b, _) = pkjwt_body(&p, &statement(&p, json!({})));
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
        assert_eq!((r.status, r.error()), (400, want), "{patch}: {:?}", r.body);
        assert!(r.body["error_description"].is_string());
    }
    // RSA private parts (CRT members, without "d") in a JWK.
    let rsa = SigningKey::generate(Alg::PS256, "rsa").unwrap();
    let mut k = serde_json::to_value(rsa.public_jwk()).unwrap();
    k["p"] = json!("AQAB");
    k["q"] = json!("AQAB");
    let (mut b, _) = pkjwt_body(&p, &statement(&p, json!({})));
    b["jwks"] = json!({"keys": [k.clone()]});
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    assert_eq!(r.error(), "invalid_client_metadata");
    // The same RSA key without them is fine.
    let (mut b, _) = pkjwt_body(&p, &statement(&p, json!({})));
    let obj = k.as_object_mut().unwrap();
    obj.remove("p");
    obj.remove("q");
    b["jwks"] = json!({"keys": [k]});
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Not JSON.
    let r = send(
        p.pkjwt
            .http
            .post(endpoint(&p.pkjwt))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("a=b"),
    )
    .await;
    assert_eq!(r.status, 400);
    // A jwks_uri the server can fetch (its own, over loopback in sandbox) is accepted.
    let (mut b, _) = pkjwt_body(&p, &statement(&p, json!({})));
    b.as_object_mut().unwrap().remove("jwks");
    b["jwks_uri"] = json!(format!("{}/jwks", p.kit.issuer));
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["jwks_uri"], b["jwks_uri"]);
    p.finish().await;
}

#[tokio::test]
async fn registration_needs_a_client_certificate() {
    let p = TestPlatform::spawn().await;
    let (b, _) = pkjwt_body(&p, &statement(&p, json!({})));
    let r = register(&p.pkjwt.http_no_cert, &p.pkjwt, &b).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
    // The statement was not used up by the refused attempt.
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Management needs one too.
    let uri = r.body["registration_client_uri"].as_str().unwrap();
    let tok = r.body["registration_access_token"].as_str().unwrap();
    let r = send(p.pkjwt.http_no_cert.get(uri).bearer_auth(tok)).await;
    assert_eq!(r.status, 401);
    p.finish().await;
}

#[tokio::test]
async fn management_read_update_delete() {
    let p = TestPlatform::spawn().await;
    let cb = format!("{}/sandbox/callback", p.kit.issuer);
    let cb2 = format!("{}/sandbox/callback2", p.kit.issuer);
    let ssa = statement(&p, json!({"software_redirect_uris": [cb, cb2]}));
    let (mut b, jwk) = pkjwt_body(&p, &ssa);
    b["redirect_uris"] = json!([cb, cb2]);
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["client_id"].as_str().unwrap().to_owned();
    let uri = r.body["registration_client_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let tok = r.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = &p.pkjwt.http;

    // Read: right token only.
    let r = send(http.get(&uri).bearer_auth(&tok)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["client_id"], id.as_str());
    assert_eq!(r.body["redirect_uris"], json!([cb, cb2]));
    for bad in [format!("{tok}x"), "nope".into()] {
        let r = send(http.get(&uri).bearer_auth(bad)).await;
        assert_eq!((r.status, r.error()), (401, "invalid_token"));
    }
    let r = send(http.get(&uri)).await;
    assert_eq!(r.status, 401);
    // Another client's token does not open this one.
    let (b2, _) = pkjwt_body(&p, &statement(&p, json!({})));
    let other = register(http, &p.pkjwt, &b2).await;
    let other_tok = other.body["registration_access_token"].as_str().unwrap();
    let r = send(http.get(&uri).bearer_auth(other_tok)).await;
    assert_eq!(r.status, 401);

    // A PAR with the second redirect URI works (and warms the client cache).
    let tpp = tpp_for(&p, &id, "private_key_jwt", Some(jwk), "private_key_jwt").await;
    let pkce = Pkce::new();
    let par = tpp
        .par(&pkce, "s", "n", &[("redirect_uri", &cb2)])
        .await
        .unwrap();
    assert_eq!(par.status, 201, "{:?}", par.body);

    // Update: drop the second redirect URI; the token rotates.
    let mut upd = r_body_for_update(&b, &id);
    upd["redirect_uris"] = json!([cb]);
    let r = send(http.put(&uri).bearer_auth(&tok).json(&upd)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let tok2 = r.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(tok, tok2);
    assert_eq!(r.body["redirect_uris"], json!([cb]));
    // Takes effect on this instance at once (the cache entry is evicted).
    let par = tpp
        .par(&pkce, "s", "n", &[("redirect_uri", &cb2)])
        .await
        .unwrap();
    assert_eq!(par.status, 400, "{:?}", par.body);
    // Another instance's stale copy lives at most ClientCache::TTL_SECS.
    let stale: authz_core::client::Client = {
        let mut c: authz_core::client::Client = serde_json::from_value(
            p.state()
                .store
                .find_client(&id)
                .await
                .unwrap()
                .unwrap()
                .metadata,
        )
        .unwrap();
        c.redirect_uris.push(cb2.clone());
        c
    };
    p.state()
        .client_cache
        .put(std::sync::Arc::new(stale), p.clock.now());
    let par = tpp
        .par(&pkce, "s", "n", &[("redirect_uri", &cb2)])
        .await
        .unwrap();
    assert_eq!(par.status, 201, "the stale copy is what the cache is for");
    p.clock.advance(authz_server::state::ClientCache::TTL_SECS);
    let par = tpp
        .par(&pkce, "s", "n", &[("redirect_uri", &cb2)])
        .await
        .unwrap();
    assert_eq!(par.status, 400, "{:?}", par.body);
    // The old token no longer works; the new one does.
    let r = send(http.get(&uri).bearer_auth(&tok)).await;
    assert_eq!(r.status, 401);
    // Update rules: client_id must match, no registration fields, rules as at registration.
    let mut bad = r_body_for_update(&b, &id);
    bad["client_id"] = json!("someone-else");
    let r = send(http.put(&uri).bearer_auth(&tok2).json(&bad)).await;
    assert_eq!(r.error(), "invalid_client_metadata");
    let mut bad = r_body_for_update(&b, &id);
    bad["token_endpoint_auth_method"] = json!("client_secret_basic");
    let r = send(http.put(&uri).bearer_auth(&tok2).json(&bad)).await;
    assert_eq!(r.error(), "invalid_client_metadata");
    // A statement for other software cannot take the client over.
    let mut bad = r_body_for_update(&b, &id);
    bad["software_statement"] = json!(statement(&p, json!({"software_id": "other-software"})));
    let r = send(http.put(&uri).bearer_auth(&tok2).json(&bad)).await;
    assert_eq!(r.error(), "invalid_software_statement");

    // A completed flow, then DELETE: tokens, refresh tokens and the client itself stop.
    let tokens = full_flow(&p, &tpp).await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    let r = send(http.delete(&uri).bearer_auth(&tok)).await;
    assert_eq!(r.status, 401, "old token cannot delete");
    let r = send(http.delete(&uri).bearer_auth(&tok2)).await;
    assert_eq!(r.status, 204);
    let r = send(http.get(&uri).bearer_auth(&tok2)).await;
    assert_eq!((r.status, r.error()), (401, "invalid_token"));
    let r = send(http.delete(&uri).bearer_auth(&tok2)).await;
    assert_eq!(r.status, 401);
    let par = tpp.par(&Pkce::new(), "s", "n", &[]).await.unwrap();
    assert_eq!((par.status.as_u16(), par.error()), (401, "invalid_client"));
    let refreshed = tpp
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .await
        .unwrap();
    assert_eq!(refreshed.status, 401, "{:?}", refreshed.body);
    let ui = tpp
        .get_with_token(&tpp.endpoint("userinfo_endpoint"), &at, true)
        .await
        .unwrap();
    assert_eq!(ui.status, 401, "the consent is revoked: {:?}", ui.body);
    p.finish().await;
}

/// RFC 7592 §2.2: an update sends the full metadata with the client_id.
pub(crate) fn r_body_for_update(registered: &Value, id: &str) -> Value {
    let mut b = registered.clone();
    b.as_object_mut().unwrap().remove("software_statement");
    b["client_id"] = json!(id);
    b
}

#[tokio::test]
async fn discovery_and_redirect_back() {
    let p = TestPlatform::spawn().await;
    let d = &p.pkjwt.discovery;
    assert_eq!(
        d["registration_endpoint"],
        d["mtls_endpoint_aliases"]["registration_endpoint"]
    );
    // The code arrives at the registered redirect URI.
    let (b, jwk) = pkjwt_body(&p, &statement(&p, json!({})));
    let r = register(&p.pkjwt.http, &p.pkjwt, &b).await;
    let id = r.body["client_id"].as_str().unwrap();
    let tpp = tpp_for(&p, id, "private_key_jwt", Some(jwk), "private_key_jwt").await;
    let back = p.authorize(&tpp, &Pkce::new(), true).await;
    assert!(back.as_str().starts_with(&tpp.redirect_uri));
    assert!(query_param(&back, "code").is_some());
    p.finish().await;
}
