-- Payment initiation (issue 7, ADR 0011): a durable double-entry ledger, domestic
-- payments, their status history and TPP idempotency keys. Payment consents live in
-- `consents` (kind 'domestic-payment'); a payment consumes its consent (Consumed = COND).
-- Amounts are BIGINT minor units of the account's currency; never floating point.

-- Customer accounts carry a cached balance, changed only together with the entries
-- that explain it (same transaction). Internal accounts (clearing, opening equity) keep
-- no cached balance: their balance is the sum of their entries, so crediting them never
-- contends on one hot row.
CREATE TABLE ledger_accounts (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    customer_id     TEXT,
    scheme          TEXT,
    identification  TEXT,
    name            TEXT NOT NULL,
    currency        TEXT NOT NULL,
    balance         BIGINT NOT NULL DEFAULT 0,
    overdraft_limit BIGINT NOT NULL DEFAULT 0,
    opening_balance BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX ledger_accounts_identification ON ledger_accounts (scheme, identification);

CREATE TABLE ledger_postings (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    payment_id  TEXT,
    at          BIGINT NOT NULL,
    description TEXT NOT NULL
);

-- Every posting's entries sum to zero (written together, in one transaction).
CREATE TABLE ledger_entries (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    posting_id TEXT NOT NULL REFERENCES ledger_postings (id),
    account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
    amount     BIGINT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX ledger_entries_account ON ledger_entries (account_id, seq);
CREATE INDEX ledger_entries_posting ON ledger_entries (posting_id);

-- One payment per consent (UNIQUE): a consent pays exactly once.
CREATE TABLE payments (
    id                  TEXT PRIMARY KEY NOT NULL,
    consent_id          TEXT NOT NULL UNIQUE,
    client_id           TEXT NOT NULL,
    customer_id         TEXT NOT NULL,
    debtor_account_id   TEXT NOT NULL,
    creditor_account_id TEXT,
    external            BIGINT NOT NULL,
    amount              BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    status              TEXT NOT NULL,
    status_reason       TEXT,
    details             TEXT NOT NULL,
    clearing_outcome    TEXT,
    next_action_at      BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX payments_due ON payments (status, next_action_at);

CREATE TABLE payment_status_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    at         BIGINT NOT NULL,
    status     TEXT NOT NULL,
    reason     TEXT
);
CREATE INDEX payment_status_log_payment ON payment_status_log (payment_id, seq);

-- x-idempotency-key per TPP: the hash covers the endpoint and the body, so the same key
-- with anything else is told apart. Kept 24 h.
CREATE TABLE idempotency_keys (
    client_id    TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (client_id, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
