-- Transaction alerts and balance thresholds (issue 8, ADR 0018).

-- Which accounts an account-access consent covers, so a posting finds the consents
-- (and so the TPPs) to alert without reading every consent. Written when a consent is
-- authorised (same transaction); rows of consents no longer authorised are ignored by
-- status, never trusted alone: the consent's own details are checked again.
CREATE TABLE consent_accounts (
    account_id TEXT NOT NULL,
    consent_id TEXT NOT NULL,
    PRIMARY KEY (account_id, consent_id)
);
INSERT INTO consent_accounts (account_id, consent_id)
SELECT a, c.id FROM consents c
CROSS JOIN LATERAL jsonb_array_elements_text(
    CASE WHEN jsonb_typeof(c.details::jsonb -> 'account_ids') = 'array'
         THEN c.details::jsonb -> 'account_ids' ELSE '[]'::jsonb END) AS a
WHERE c.kind = 'account-access';

-- A TPP's balance alert levels on one account, set under one consent (alerts stop with
-- it). `amount` is signed minor units of the account's currency (below zero = overdrawn).
CREATE TABLE balance_thresholds (
    client_id  TEXT NOT NULL,
    account_id TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    consent_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, account_id, amount)
);
CREATE INDEX balance_thresholds_account ON balance_thresholds (account_id);

-- Money arriving from outside the bank (the sandbox trigger): the sender and the
-- reference the credit's alert shows. `posting_id` is the ledger posting it made.
CREATE TABLE incoming_transfers (
    id                          TEXT PRIMARY KEY NOT NULL,
    account_id                  TEXT NOT NULL,
    amount                      BIGINT NOT NULL,
    currency                    TEXT NOT NULL,
    counterparty_name           TEXT NOT NULL,
    counterparty_scheme         TEXT,
    counterparty_identification TEXT,
    reference                   TEXT,
    posting_id                  TEXT NOT NULL,
    created_at                  BIGINT NOT NULL
);

-- The expiry sweeper and the retention job.
CREATE INDEX consents_expiry ON consents (status, expires_at);
CREATE INDEX event_deliveries_finished ON event_deliveries (state, updated_at_ms);
CREATE INDEX event_delivery_attempts_at ON event_delivery_attempts (at_ms);
CREATE INDEX event_outbox_created ON event_outbox (created_at);
