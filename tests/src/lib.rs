//! Test harness: starts the real platform (both TLS listeners, real certificates, real
//! storage) on free ports, in a private directory, on the backend chosen by
//! `WEKEZA_TEST_BACKEND` (`sqlite`, the default, or `scaled` = PostgreSQL + Redis from
//! `WEKEZA_TEST_POSTGRES_URL` / `WEKEZA_TEST_REDIS_URL`), and hands the test TPPs and a
//! customer agent that reach it only over HTTPS, as third parties do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use authz_server::clock::{Clock, OffsetClock};
use authz_server::config::Config;
use fapi_conformance::browser::{Customer, param, totp};
use fapi_conformance::{Kit, Pkce, Tpp};
use std::path::PathBuf;
use std::sync::Arc;

pub mod journey;

pub use fapi_conformance::tpp::{Reply, jwt_claims};

pub struct TestPlatform {
    pub platform: Option<authz_server::Platform>,
    pub clock: Arc<OffsetClock>,
    pub dir: PathBuf,
    pub kit: Kit,
    /// `private_key_jwt` sandbox client.
    pub pkjwt: Tpp,
    /// `tls_client_auth` sandbox client.
    pub mtls: Tpp,
    /// `private_key_jwt` sandbox client with DPoP-bound tokens; its DPoP proofs follow
    /// the server's clock.
    pub dpop: Tpp,
    schema: Option<(String, String)>,
}

pub fn backend() -> String {
    std::env::var("WEKEZA_TEST_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

impl TestPlatform {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(edit: impl FnOnce(&mut Config)) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("wkz-e2e-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cfg = Config {
            web_port: 0,
            mtls_port: 0,
            rs_port: 0,
            keys_dir: dir.join("keys"),
            certs_dir: dir.join("certs"),
            database_url: format!("sqlite://{}/wekeza.db", dir.display()),
            ..Config::default()
        };
        let mut schema = None;
        if backend() == "scaled" {
            let pg = std::env::var("WEKEZA_TEST_POSTGRES_URL")
                .expect("WEKEZA_TEST_POSTGRES_URL for the scaled backend");
            let redis = std::env::var("WEKEZA_TEST_REDIS_URL")
                .expect("WEKEZA_TEST_REDIS_URL for the scaled backend");
            let s = format!("e2e_{}", &id[..16]);
            cfg.database_url = pg.clone();
            cfg.database_schema = Some(s.clone());
            cfg.redis_url = Some(redis);
            cfg.redis_key_prefix = format!("e2e:{id}");
            schema = Some((pg, s));
        }
        edit(&mut cfg);
        let clock = Arc::new(OffsetClock::default());
        let platform = authz_server::start(cfg, clock.clone())
            .await
            .expect("platform starts");
        let kit = Kit::load(platform.kit_path.as_ref().expect("sandbox kit")).unwrap();
        let pkjwt = Tpp::from_kit(&kit, kit.client("private_key_jwt").unwrap())
            .await
            .unwrap();
        let mtls = Tpp::from_kit(&kit, kit.client("tls_client_auth").unwrap())
            .await
            .unwrap();
        let mut dpop = Tpp::from_kit(&kit, kit.dpop_client("private_key_jwt").unwrap())
            .await
            .unwrap();
        let c = clock.clone();
        dpop.clock = Arc::new(move || c.now());
        // x-jws-signature `iat`s follow the server clock, which tests move.
        let (mut pkjwt, mut mtls) = (pkjwt, mtls);
        for t in [&mut pkjwt, &mut mtls, &mut dpop] {
            let c = clock.clone();
            t.jws_clock = Arc::new(move || c.now());
        }
        Self {
            platform: Some(platform),
            clock,
            dir,
            kit,
            pkjwt,
            mtls,
            dpop,
            schema,
        }
    }

    pub fn state(&self) -> &authz_server::state::AppState {
        &self.platform.as_ref().unwrap().state
    }

    pub fn customer(&self) -> Customer {
        Customer::new(&std::fs::read(&self.kit.ca_cert).unwrap(), &self.kit.issuer).unwrap()
    }

    /// A TOTP code the server has not seen yet: moves the server clock to the next
    /// 30 s step first (each step is accepted once per customer).
    pub fn fresh_otp(&self) -> String {
        self.clock.advance(30);
        totp(&self.kit.customer.totp_secret, self.clock.now()).unwrap()
    }

    /// PAR → customer signs in and decides → the redirect back.
    pub async fn authorize(&self, tpp: &Tpp, pkce: &Pkce, approve: bool) -> url::Url {
        let par = tpp.par(pkce, "st-123", "n-456", &[]).await.unwrap();
        assert_eq!(par.status, 201, "PAR failed: {:?}", par.body);
        let url = tpp.authorize_url(par.str("request_uri").unwrap());
        let otp = self.fresh_otp();
        let c = &self.kit.customer;
        self.customer()
            .authorize(&url, &c.username, &c.password, &otp, approve)
            .await
            .unwrap()
    }

    /// A complete approved flow: the code exchanged for tokens.
    pub async fn tokens(&self, tpp: &Tpp) -> Reply {
        let pkce = Pkce::new();
        let back = self.authorize(tpp, &pkce, true).await;
        let code = param(&back, "code").expect("code in redirect");
        let r = tpp.exchange_code(&code, &pkce).await.unwrap();
        assert_eq!(r.status, 200, "token exchange failed: {:?}", r.body);
        r
    }

    /// Stop the servers and drop the test's database schema.
    pub async fn finish(mut self) {
        if let Some(p) = self.platform.take() {
            p.shutdown().await;
        }
        if let Some((url, s)) = self.schema.take()
            && let Ok(pool) = sqlx::PgPool::connect(&url).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {s} CASCADE"
            )))
            .execute(&pool)
            .await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub use fapi_conformance::browser::param as query_param;
pub use fapi_conformance::tpp::now;
