-- WebAuthn passkeys (issue 6): several per customer. `credential` is webauthn-rs's
-- serialized `Passkey` (JSON); `sign_count` mirrors its signature counter so a use can be
-- recorded with a guarded UPDATE (a counter that does not move forward is refused).
CREATE TABLE passkeys (
    credential_id TEXT PRIMARY KEY NOT NULL,
    customer_id   TEXT NOT NULL,
    name          TEXT NOT NULL,
    credential    TEXT NOT NULL,
    sign_count    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX passkeys_customer ON passkeys (customer_id, created_at);
