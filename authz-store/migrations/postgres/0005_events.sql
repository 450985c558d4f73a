-- Event notifications (issue 8): subscriptions, the transactional outbox and one delivery
-- row per (event, subscription). Times: `*_ms` columns are unix milliseconds (retry timing
-- and latency need better than seconds); `toe`, `created_at`, `updated_at` unix seconds.

CREATE TABLE event_subscriptions (
    id           TEXT PRIMARY KEY NOT NULL,
    client_id    TEXT NOT NULL,
    -- NULL: the TPP polls (`POST /events`) instead of receiving callbacks.
    callback_url TEXT,
    version      TEXT NOT NULL,
    -- JSON array of event type URNs; empty = every type.
    event_types  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX event_subscriptions_client ON event_subscriptions (client_id);

-- Written in the same transaction as the change it reports; never updated.
CREATE TABLE event_outbox (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    client_id  TEXT NOT NULL,
    consent_id TEXT,
    event_type TEXT NOT NULL,
    rid        TEXT NOT NULL,
    rty        TEXT NOT NULL,
    link       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    txn        TEXT NOT NULL,
    toe        BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX event_outbox_client ON event_outbox (client_id, seq);

-- state: pending | delivered | acked (polling) | dead | suppressed
CREATE TABLE event_deliveries (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES event_subscriptions (id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL REFERENCES event_outbox (id),
    event_seq       BIGINT NOT NULL,
    toe             BIGINT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    since_ms        BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    updated_at_ms   BIGINT NOT NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX event_deliveries_due ON event_deliveries (state, next_attempt_ms);
CREATE INDEX event_deliveries_order ON event_deliveries (subscription_id, state, toe, event_seq);

CREATE TABLE event_delivery_attempts (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES event_subscriptions (id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL,
    attempt         BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL,
    status_code     BIGINT,
    error           TEXT,
    latency_ms      BIGINT NOT NULL,
    outcome         TEXT NOT NULL
);
CREATE INDEX event_delivery_attempts_sub ON event_delivery_attempts (subscription_id, seq);
