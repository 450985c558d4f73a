-- File (bulk) payments (issue 7, ADR 0016). A file-payment consent is a row of
-- `consents` (kind 'file-payment'); its uploaded file is kept here, once: the primary key
-- makes a second upload fail. Each payment of an executed file is a row of `payments`
-- (so the ledger, the status log and the clearing treat it like any other payment),
-- tied to its file payment and its place in the file by `file_payment_items`.
CREATE TABLE file_payment_files (
    consent_id   TEXT PRIMARY KEY NOT NULL,
    file_type    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body         TEXT NOT NULL,
    file_hash    TEXT NOT NULL,
    uploaded_at  BIGINT NOT NULL
);

-- One file payment per consent (UNIQUE): a consent executes its file exactly once.
CREATE TABLE file_payments (
    id                TEXT PRIMARY KEY NOT NULL,
    consent_id        TEXT NOT NULL UNIQUE,
    client_id         TEXT NOT NULL,
    customer_id       TEXT NOT NULL,
    debtor_account_id TEXT NOT NULL,
    currency          TEXT NOT NULL,
    item_count        BIGINT NOT NULL,
    control_sum       BIGINT NOT NULL,
    details           TEXT NOT NULL,
    created_at        BIGINT NOT NULL
);

CREATE TABLE file_payment_items (
    file_payment_id TEXT NOT NULL REFERENCES file_payments (id),
    seq             BIGINT NOT NULL,
    payment_id      TEXT NOT NULL UNIQUE REFERENCES payments (id),
    PRIMARY KEY (file_payment_id, seq)
);
