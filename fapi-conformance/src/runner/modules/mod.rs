//! Module bodies, grouped by what they exercise. Each is
//! `async fn(&Ctx, &mut Log) -> anyhow::Result<()>`; an error ends the module as FAIL.

pub mod authz;
pub mod discovery;
pub mod dpop;
pub mod flows;
pub mod holder;
pub mod refresh;
pub mod signed;
pub mod token;
pub mod uk;
