-- Portable subset on purpose: TEXT and BIGINT only (ids as text, unix-second times,
-- JSON as text, flags as 0/1), so one query code path serves SQLite and PostgreSQL.

CREATE TABLE clients (
    client_id  TEXT PRIMARY KEY NOT NULL,
    metadata   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE customers (
    id             TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    totp_secret    TEXT NOT NULL,
    totp_last_step BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);

CREATE TABLE consents (
    id          TEXT PRIMARY KEY NOT NULL,
    client_id   TEXT NOT NULL,
    customer_id TEXT,
    kind        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    status      TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    expires_at  BIGINT
);
CREATE INDEX consents_customer ON consents (customer_id, created_at);

-- Append-only; `seq` keeps entries with the same timestamp in insertion order.
CREATE TABLE consent_audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    consent_id TEXT NOT NULL REFERENCES consents (id),
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    detail     TEXT NOT NULL
);
CREATE INDEX consent_audit_consent ON consent_audit (consent_id, seq);

CREATE TABLE refresh_tokens (
    digest     TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL,
    consent_id TEXT,
    subject    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    cnf        TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_consent ON refresh_tokens (consent_id);

CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_access_tokens_expiry ON revoked_access_tokens (expires_at);

-- Ephemeral key/value state for the embedded (no Redis) mode.
CREATE TABLE ephemeral (
    ns         TEXT NOT NULL,
    item_key   TEXT NOT NULL,
    item_value TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (ns, item_key)
);
CREATE INDEX ephemeral_expiry ON ephemeral (expires_at);
