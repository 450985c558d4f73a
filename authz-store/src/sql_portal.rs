//! Developer portal storage (issue 9, migration `0008_portal`, ADR 0014): developer
//! accounts, organisations, memberships with roles, invitations, apps and the portal's
//! append-only audit trail, over the same SQL pool as [`SqlStore`]. An app's clients live
//! in `clients` / `client_registrations` (written through [`crate::RegistrationStore`]),
//! so the protocol side sees portal-made clients exactly like registered ones.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::sql::{col, corrupt, db_err};
use crate::{SqlStore, StoreResult};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeveloperRecord {
    pub id: String,
    /// Stored lower-cased.
    pub username: String,
    /// Stored lower-cased.
    pub email: String,
    pub password_hash: String,
    /// Sealed (the server's secret box); `None` until the developer enrols TOTP.
    pub totp_secret: Option<String>,
    pub totp_last_step: i64,
    pub is_admin: bool,
    pub created_at: i64,
}

impl std::fmt::Debug for DeveloperRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeveloperRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub id: String,
    pub name: String,
    pub created_by: String,
    pub created_at: i64,
}

/// A member as listed on the org page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub org_id: String,
    pub developer_id: String,
    pub username: String,
    pub email: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRecord {
    pub org_id: String,
    pub invitee: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// The sandbox client.
    pub client_id: String,
    /// `active` or `deleted`.
    pub status: String,
    /// Public material and form choices (redirect URIs, scope, method, certificate PEM).
    pub metadata: serde_json::Value,
    /// `none`, `requested`, `approved`, `rejected`.
    pub golive_status: String,
    pub golive_reason: String,
    pub production_client_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalAuditEntry {
    pub org_id: String,
    pub app_id: Option<String>,
    /// Developer username.
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub at: i64,
}

/// A sandbox test customer made by an org (the customer itself is a `customers` row).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCustomerRecord {
    pub customer_id: String,
    pub org_id: String,
    pub username: String,
    /// Sealed by the server (never plaintext here).
    pub password_sealed: String,
    pub created_at: i64,
}

impl std::fmt::Debug for TestCustomerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCustomerRecord")
            .field("customer_id", &self.customer_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait PortalStore: Send + Sync {
    /// A taken username or email is a [`crate::StoreError::Conflict`].
    async fn insert_developer(&self, d: &DeveloperRecord) -> StoreResult<()>;
    /// By lower-cased username or email.
    async fn find_developer_by_login(&self, login: &str) -> StoreResult<Option<DeveloperRecord>>;
    async fn find_developer(&self, id: &str) -> StoreResult<Option<DeveloperRecord>>;
    async fn set_developer_totp(&self, id: &str, sealed: Option<&str>) -> StoreResult<()>;
    async fn set_developer_password(&self, id: &str, password_hash: &str) -> StoreResult<()>;
    /// As for customers: `false` (nothing changed) if a step at or after `step` was used.
    async fn advance_developer_totp_step(&self, id: &str, step: i64) -> StoreResult<bool>;

    /// The org and its creator as owner, in one transaction.
    async fn insert_org(&self, org: &OrgRecord, audit: &PortalAuditEntry) -> StoreResult<()>;
    async fn find_org(&self, id: &str) -> StoreResult<Option<OrgRecord>>;
    /// Orgs the developer belongs to, with the developer's role.
    async fn orgs_of(&self, developer_id: &str) -> StoreResult<Vec<(OrgRecord, String)>>;
    async fn role_in(&self, org_id: &str, developer_id: &str) -> StoreResult<Option<String>>;
    async fn members(&self, org_id: &str) -> StoreResult<Vec<MemberRecord>>;
    /// Change a member's role; `false` if not a member.
    async fn set_role(
        &self,
        org_id: &str,
        developer_id: &str,
        role: &str,
        audit: &PortalAuditEntry,
    ) -> StoreResult<bool>;
    async fn remove_member(
        &self,
        org_id: &str,
        developer_id: &str,
        audit: &PortalAuditEntry,
    ) -> StoreResult<bool>;
    async fn owner_count(&self, org_id: &str) -> StoreResult<i64>;

    /// Replace any earlier invitation of the same invitee to the same org.
    async fn invite(&self, inv: &InvitationRecord, audit: &PortalAuditEntry) -> StoreResult<()>;
    async fn invitations(&self, org_id: &str) -> StoreResult<Vec<InvitationRecord>>;
    /// Turn the invitations naming `username` or `email` into memberships (an existing
    /// membership is kept); the org ids joined.
    async fn accept_invitations(
        &self,
        developer_id: &str,
        username: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<Vec<String>>;

    async fn insert_app(&self, app: &AppRecord, audit: &PortalAuditEntry) -> StoreResult<()>;
    async fn find_app(&self, id: &str) -> StoreResult<Option<AppRecord>>;
    async fn apps_of(&self, org_id: &str) -> StoreResult<Vec<AppRecord>>;
    /// Replace the app's mutable fields (status, metadata, go-live state); the audit
    /// line in the same transaction.
    async fn update_app(&self, app: &AppRecord, audit: &PortalAuditEntry) -> StoreResult<()>;
    /// Apps whose go-live is `requested`, oldest first.
    async fn golive_requests(&self) -> StoreResult<Vec<AppRecord>>;

    async fn insert_test_customer(&self, c: &TestCustomerRecord) -> StoreResult<()>;
    /// The org's test customers, oldest first; every org's when `org_id` is `None`.
    async fn test_customers(&self, org_id: Option<&str>) -> StoreResult<Vec<TestCustomerRecord>>;
    /// Forget the org's test customers (the caller removes their sign-in data).
    async fn delete_test_customers(&self, org_id: &str) -> StoreResult<u64>;

    async fn insert_portal_audit(&self, e: &PortalAuditEntry) -> StoreResult<()>;
    /// Newest first, at most `limit`.
    async fn portal_audit(&self, org_id: &str, limit: i64) -> StoreResult<Vec<PortalAuditEntry>>;
}

// Column lists as macros so the queries stay `&'static str` (sqlx refuses built strings).
macro_rules! dev_cols {
    () => {
        "id, username, email, password_hash, totp_secret, totp_last_step, is_admin, created_at"
    };
}
macro_rules! app_cols {
    () => {
        "id, org_id, name, client_id, status, metadata, golive_status, golive_reason, \
         production_client_id, created_at, updated_at"
    };
}

fn dev_from_row(r: &AnyRow) -> StoreResult<DeveloperRecord> {
    Ok(DeveloperRecord {
        id: col(r, "id")?,
        username: col(r, "username")?,
        email: col(r, "email")?,
        password_hash: col(r, "password_hash")?,
        totp_secret: col(r, "totp_secret")?,
        totp_last_step: col(r, "totp_last_step")?,
        is_admin: col::<i64>(r, "is_admin")? != 0,
        created_at: col(r, "created_at")?,
    })
}

fn org_from_row(r: &AnyRow) -> StoreResult<OrgRecord> {
    Ok(OrgRecord {
        id: col(r, "id")?,
        name: col(r, "name")?,
        created_by: col(r, "created_by")?,
        created_at: col(r, "created_at")?,
    })
}

fn app_from_row(r: &AnyRow) -> StoreResult<AppRecord> {
    let meta: String = col(r, "metadata")?;
    Ok(AppRecord {
        id: col(r, "id")?,
        org_id: col(r, "org_id")?,
        name: col(r, "name")?,
        client_id: col(r, "client_id")?,
        status: col(r, "status")?,
        metadata: serde_json::from_str(&meta).map_err(|e| corrupt("portal_apps.metadata", e))?,
        golive_status: col(r, "golive_status")?,
        golive_reason: col(r, "golive_reason")?,
        production_client_id: col(r, "production_client_id")?,
        created_at: col(r, "created_at")?,
        updated_at: col(r, "updated_at")?,
    })
}

fn audit_from_row(r: &AnyRow) -> StoreResult<PortalAuditEntry> {
    Ok(PortalAuditEntry {
        org_id: col(r, "org_id")?,
        app_id: col(r, "app_id")?,
        actor: col(r, "actor")?,
        action: col(r, "action")?,
        detail: col(r, "detail")?,
        at: col(r, "at")?,
    })
}

async fn write_audit<'e, E>(exec: E, e: &PortalAuditEntry) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO portal_audit (org_id, app_id, actor, action, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(e.org_id.clone())
    .bind(e.app_id.clone())
    .bind(e.actor.clone())
    .bind(e.action.clone())
    .bind(e.detail.clone())
    .bind(e.at)
    .execute(exec)
    .await
    .map_err(db_err)?;
    Ok(())
}

fn meta_json(v: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| corrupt("portal_apps.metadata", e))
}

#[async_trait]
impl PortalStore for SqlStore {
    async fn insert_developer(&self, d: &DeveloperRecord) -> StoreResult<()> {
        sqlx::query(concat!(
            "INSERT INTO portal_developers (",
            dev_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(d.id.clone())
        .bind(d.username.clone())
        .bind(d.email.clone())
        .bind(d.password_hash.clone())
        .bind(d.totp_secret.clone())
        .bind(d.totp_last_step)
        .bind(i64::from(d.is_admin))
        .bind(d.created_at)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn find_developer_by_login(&self, login: &str) -> StoreResult<Option<DeveloperRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            dev_cols!(),
            " FROM portal_developers WHERE username = $1 OR email = $1"
        ))
        .bind(login.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .as_ref()
        .map(dev_from_row)
        .transpose()
    }

    async fn find_developer(&self, id: &str) -> StoreResult<Option<DeveloperRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            dev_cols!(),
            " FROM portal_developers WHERE id = $1"
        ))
        .bind(id.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .as_ref()
        .map(dev_from_row)
        .transpose()
    }

    async fn set_developer_totp(&self, id: &str, sealed: Option<&str>) -> StoreResult<()> {
        sqlx::query("UPDATE portal_developers SET totp_secret = $1 WHERE id = $2")
            .bind(sealed.map(str::to_owned))
            .bind(id.to_owned())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn set_developer_password(&self, id: &str, password_hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE portal_developers SET password_hash = $1 WHERE id = $2")
            .bind(password_hash.to_owned())
            .bind(id.to_owned())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn advance_developer_totp_step(&self, id: &str, step: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE portal_developers SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1",
        )
        .bind(step)
        .bind(id.to_owned())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert_org(&self, org: &OrgRecord, audit: &PortalAuditEntry) -> StoreResult<()> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO portal_orgs (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(org.id.clone())
        .bind(org.name.clone())
        .bind(org.created_by.clone())
        .bind(org.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO portal_members (org_id, developer_id, role, created_at) \
             VALUES ($1, $2, 'owner', $3)",
        )
        .bind(org.id.clone())
        .bind(org.created_by.clone())
        .bind(org.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        write_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_org(&self, id: &str) -> StoreResult<Option<OrgRecord>> {
        sqlx::query("SELECT id, name, created_by, created_at FROM portal_orgs WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .as_ref()
            .map(org_from_row)
            .transpose()
    }

    async fn orgs_of(&self, developer_id: &str) -> StoreResult<Vec<(OrgRecord, String)>> {
        sqlx::query(
            "SELECT o.id, o.name, o.created_by, o.created_at, m.role FROM portal_orgs o \
             JOIN portal_members m ON m.org_id = o.id WHERE m.developer_id = $1 \
             ORDER BY o.created_at, o.id",
        )
        .bind(developer_id.to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| Ok((org_from_row(r)?, col(r, "role")?)))
        .collect()
    }

    async fn role_in(&self, org_id: &str, developer_id: &str) -> StoreResult<Option<String>> {
        sqlx::query("SELECT role FROM portal_members WHERE org_id = $1 AND developer_id = $2")
            .bind(org_id.to_owned())
            .bind(developer_id.to_owned())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?
            .as_ref()
            .map(|r| col(r, "role"))
            .transpose()
    }

    async fn members(&self, org_id: &str) -> StoreResult<Vec<MemberRecord>> {
        sqlx::query(
            "SELECT m.org_id, m.developer_id, d.username, d.email, m.role FROM portal_members m \
             JOIN portal_developers d ON d.id = m.developer_id WHERE m.org_id = $1 \
             ORDER BY m.created_at, d.username",
        )
        .bind(org_id.to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            Ok(MemberRecord {
                org_id: col(r, "org_id")?,
                developer_id: col(r, "developer_id")?,
                username: col(r, "username")?,
                email: col(r, "email")?,
                role: col(r, "role")?,
            })
        })
        .collect()
    }

    async fn set_role(
        &self,
        org_id: &str,
        developer_id: &str,
        role: &str,
        audit: &PortalAuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let r = sqlx::query(
            "UPDATE portal_members SET role = $1 WHERE org_id = $2 AND developer_id = $3",
        )
        .bind(role.to_owned())
        .bind(org_id.to_owned())
        .bind(developer_id.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if r.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        write_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn remove_member(
        &self,
        org_id: &str,
        developer_id: &str,
        audit: &PortalAuditEntry,
    ) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let r = sqlx::query("DELETE FROM portal_members WHERE org_id = $1 AND developer_id = $2")
            .bind(org_id.to_owned())
            .bind(developer_id.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if r.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        write_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn owner_count(&self, org_id: &str) -> StoreResult<i64> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n FROM portal_members WHERE org_id = $1 AND role = 'owner'",
        )
        .bind(org_id.to_owned())
        .fetch_one(self.pool())
        .await
        .map_err(db_err)?;
        col(&r, "n")
    }

    async fn invite(&self, inv: &InvitationRecord, audit: &PortalAuditEntry) -> StoreResult<()> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO portal_invitations (org_id, invitee, role, invited_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, invitee) DO UPDATE SET \
             role = excluded.role, invited_by = excluded.invited_by, created_at = excluded.created_at",
        )
        .bind(inv.org_id.clone())
        .bind(inv.invitee.clone())
        .bind(inv.role.clone())
        .bind(inv.invited_by.clone())
        .bind(inv.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        write_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn invitations(&self, org_id: &str) -> StoreResult<Vec<InvitationRecord>> {
        sqlx::query(
            "SELECT org_id, invitee, role, invited_by, created_at FROM portal_invitations \
             WHERE org_id = $1 ORDER BY created_at, invitee",
        )
        .bind(org_id.to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| {
            Ok(InvitationRecord {
                org_id: col(r, "org_id")?,
                invitee: col(r, "invitee")?,
                role: col(r, "role")?,
                invited_by: col(r, "invited_by")?,
                created_at: col(r, "created_at")?,
            })
        })
        .collect()
    }

    async fn accept_invitations(
        &self,
        developer_id: &str,
        username: &str,
        email: &str,
        now: i64,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        let rows = sqlx::query(
            "SELECT org_id, invitee, role FROM portal_invitations \
             WHERE invitee = $1 OR invitee = $2 ORDER BY created_at",
        )
        .bind(username.to_owned())
        .bind(email.to_owned())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut joined = Vec::new();
        for r in &rows {
            let org: String = col(r, "org_id")?;
            let invitee: String = col(r, "invitee")?;
            let role: String = col(r, "role")?;
            let done = sqlx::query(
                "INSERT INTO portal_members (org_id, developer_id, role, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, developer_id) DO NOTHING",
            )
            .bind(org.clone())
            .bind(developer_id.to_owned())
            .bind(role.clone())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query("DELETE FROM portal_invitations WHERE org_id = $1 AND invitee = $2")
                .bind(org.clone())
                .bind(invitee)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if done.rows_affected() == 1 {
                write_audit(
                    &mut *tx,
                    &PortalAuditEntry {
                        org_id: org.clone(),
                        app_id: None,
                        actor: username.to_owned(),
                        action: "invitation_accepted".into(),
                        detail: format!("joined as {role}"),
                        at: now,
                    },
                )
                .await?;
                joined.push(org);
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(joined)
    }

    async fn insert_app(&self, app: &AppRecord, audit: &PortalAuditEntry) -> StoreResult<()> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        sqlx::query(concat!(
            "INSERT INTO portal_apps (",
            app_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(app.id.clone())
        .bind(app.org_id.clone())
        .bind(app.name.clone())
        .bind(app.client_id.clone())
        .bind(app.status.clone())
        .bind(meta_json(&app.metadata)?)
        .bind(app.golive_status.clone())
        .bind(app.golive_reason.clone())
        .bind(app.production_client_id.clone())
        .bind(app.created_at)
        .bind(app.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        write_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_app(&self, id: &str) -> StoreResult<Option<AppRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            app_cols!(),
            " FROM portal_apps WHERE id = $1"
        ))
        .bind(id.to_owned())
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?
        .as_ref()
        .map(app_from_row)
        .transpose()
    }

    async fn apps_of(&self, org_id: &str) -> StoreResult<Vec<AppRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            app_cols!(),
            " FROM portal_apps WHERE org_id = $1 ORDER BY created_at, id"
        ))
        .bind(org_id.to_owned())
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(app_from_row)
        .collect()
    }

    async fn update_app(&self, app: &AppRecord, audit: &PortalAuditEntry) -> StoreResult<()> {
        let mut tx = self.pool().begin().await.map_err(db_err)?;
        sqlx::query(
            "UPDATE portal_apps SET status = $1, metadata = $2, golive_status = $3, \
             golive_reason = $4, production_client_id = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(app.status.clone())
        .bind(meta_json(&app.metadata)?)
        .bind(app.golive_status.clone())
        .bind(app.golive_reason.clone())
        .bind(app.production_client_id.clone())
        .bind(app.updated_at)
        .bind(app.id.clone())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        write_audit(&mut *tx, audit).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn golive_requests(&self) -> StoreResult<Vec<AppRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            app_cols!(),
            " FROM portal_apps WHERE golive_status = 'requested' \
             AND status = 'active' ORDER BY updated_at, id"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(app_from_row)
        .collect()
    }

    async fn insert_test_customer(&self, c: &TestCustomerRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO portal_test_customers (customer_id, org_id, username, password_sealed, \
             created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(c.customer_id.clone())
        .bind(c.org_id.clone())
        .bind(c.username.clone())
        .bind(c.password_sealed.clone())
        .bind(c.created_at)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn test_customers(&self, org_id: Option<&str>) -> StoreResult<Vec<TestCustomerRecord>> {
        let q = match org_id {
            Some(o) => sqlx::query(
                "SELECT customer_id, org_id, username, password_sealed, created_at \
                 FROM portal_test_customers WHERE org_id = $1 ORDER BY created_at, username",
            )
            .bind(o.to_owned()),
            None => sqlx::query(
                "SELECT customer_id, org_id, username, password_sealed, created_at \
                 FROM portal_test_customers ORDER BY created_at, username",
            ),
        };
        q.fetch_all(self.pool())
            .await
            .map_err(db_err)?
            .iter()
            .map(|r| {
                Ok(TestCustomerRecord {
                    customer_id: col(r, "customer_id")?,
                    org_id: col(r, "org_id")?,
                    username: col(r, "username")?,
                    password_sealed: col(r, "password_sealed")?,
                    created_at: col(r, "created_at")?,
                })
            })
            .collect()
    }

    async fn delete_test_customers(&self, org_id: &str) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM portal_test_customers WHERE org_id = $1")
            .bind(org_id.to_owned())
            .execute(self.pool())
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected())
    }

    async fn insert_portal_audit(&self, e: &PortalAuditEntry) -> StoreResult<()> {
        write_audit(self.pool(), e).await
    }

    async fn portal_audit(&self, org_id: &str, limit: i64) -> StoreResult<Vec<PortalAuditEntry>> {
        sqlx::query(
            "SELECT org_id, app_id, actor, action, detail, at FROM portal_audit \
             WHERE org_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(org_id.to_owned())
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}
