-- Authentication factors (issue 6): recovery codes, the durable sign-in back-off, the
-- sign-in audit trail, and when a consent was last used by its client.

-- Single-use recovery codes, stored as SHA-256 digests (the codes carry 80 random bits,
-- so a digest is not worth brute-forcing); `used_at` set once, by a guarded UPDATE.
CREATE TABLE recovery_codes (
    customer_id TEXT NOT NULL,
    digest      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (customer_id, digest)
);

-- Failed sign-ins per subject (digest of the normalised username, known or not):
-- `failures` since the last lock, `lockouts` so far (the delay doubles with each),
-- `locked_until` unix seconds. Durable so a restart or another instance keeps the lock.
CREATE TABLE login_throttle (
    subject      TEXT PRIMARY KEY NOT NULL,
    failures     BIGINT NOT NULL DEFAULT 0,
    lockouts     BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0,
    updated_at   BIGINT NOT NULL
);

-- Append-only sign-in audit: every success and failure at the authorization login,
-- the passkey login and the dashboard. Never a secret.
CREATE TABLE auth_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT,
    at          BIGINT NOT NULL,
    method      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    client_id   TEXT
);
CREATE INDEX auth_events_customer ON auth_events (customer_id, seq);

ALTER TABLE consents ADD COLUMN last_used_at BIGINT;
