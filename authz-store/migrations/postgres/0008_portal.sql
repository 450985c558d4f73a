-- Developer portal (issue 9, ADR 0014): developer accounts (separate from bank customers),
-- organisations with members and roles, invitations, apps (each owning a sandbox client,
-- and a production client once approved) and the portal's append-only audit trail.

-- A developer: argon2id password hash (as for customers), optional TOTP secret sealed
-- with the same secret box as customers' (secrets.rs). `is_admin` marks bank reviewers.
CREATE TABLE portal_developers (
    id             TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL UNIQUE,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    totp_secret    TEXT,
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    is_admin       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);

CREATE TABLE portal_orgs (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- role: owner | developer | viewer
CREATE TABLE portal_members (
    org_id       TEXT NOT NULL,
    developer_id TEXT NOT NULL,
    role         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (org_id, developer_id)
);
CREATE INDEX portal_members_developer ON portal_members (developer_id);

-- An invitation names a username or an email (lower-cased); it becomes a membership
-- when a developer with that name or email signs in.
CREATE TABLE portal_invitations (
    org_id     TEXT NOT NULL,
    invitee    TEXT NOT NULL,
    role       TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, invitee)
);
CREATE INDEX portal_invitations_invitee ON portal_invitations (invitee);

-- An app: its sandbox client (a row in `clients` + `client_registrations`, so the same
-- FAPI checks as dynamic registration apply), its public material, and its go-live state
-- (none | requested | approved | rejected). status: active | deleted.
CREATE TABLE portal_apps (
    id                   TEXT PRIMARY KEY NOT NULL,
    org_id               TEXT NOT NULL,
    name                 TEXT NOT NULL,
    client_id            TEXT NOT NULL,
    status               TEXT NOT NULL,
    metadata             TEXT NOT NULL,
    golive_status        TEXT NOT NULL DEFAULT 'none',
    golive_reason        TEXT NOT NULL DEFAULT '',
    production_client_id TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX portal_apps_org ON portal_apps (org_id);

-- Append-only: who did what to an org or app (never a secret).
CREATE TABLE portal_audit (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id TEXT NOT NULL,
    app_id TEXT,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    at     BIGINT NOT NULL
);
CREATE INDEX portal_audit_org ON portal_audit (org_id, seq);

-- Sandbox test customers an org made (their customer rows are in `customers`): the
-- password is kept sealed so the org's kit can show it again (sandbox only).
CREATE TABLE portal_test_customers (
    customer_id     TEXT PRIMARY KEY NOT NULL,
    org_id          TEXT NOT NULL,
    username        TEXT NOT NULL UNIQUE,
    password_sealed TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX portal_test_customers_org ON portal_test_customers (org_id);
