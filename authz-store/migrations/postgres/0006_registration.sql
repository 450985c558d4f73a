-- Dynamic client registration (RFC 7591 / 7592): what the registration added to a client.
-- The client's protocol metadata stays in `clients`; this row holds the registration
-- access token's digest (never the token), the software statement's identity and the
-- registration-only metadata (jwks_uri, the statement itself). One row per registered
-- client; clients seeded from configuration have none.
CREATE TABLE client_registrations (
    client_id    TEXT PRIMARY KEY NOT NULL,
    token_digest TEXT NOT NULL,
    software_id  TEXT NOT NULL,
    org_id       TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX client_registrations_org ON client_registrations (org_id);
