-- Gateway (issue 9): which plan a client is on, and one row per metered API call.
-- A client without a `client_plans` row is on the sandbox plan, alone in an org named
-- after its client id.
CREATE TABLE client_plans (
    client_id  TEXT PRIMARY KEY NOT NULL,
    org_id     TEXT NOT NULL,
    plan       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX client_plans_org ON client_plans (org_id);

-- Metering: written in batches off the request path, deleted after the retention period.
-- `endpoint` is the route template (`/accounts/{AccountId}`), never the raw path; `plan`
-- is the plan in force at the call, so a statement prices calls as they were made.
-- client_id / org_id are NULL for calls that never identified a client (refused before
-- or at authentication).
CREATE TABLE api_calls (
    at_ms      BIGINT NOT NULL,
    server     TEXT NOT NULL,
    client_id  TEXT,
    org_id     TEXT,
    plan       TEXT,
    method     TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    status     BIGINT NOT NULL,
    latency_us BIGINT NOT NULL,
    req_bytes  BIGINT NOT NULL,
    resp_bytes BIGINT NOT NULL
);
CREATE INDEX api_calls_at ON api_calls (at_ms);
CREATE INDEX api_calls_org_at ON api_calls (org_id, at_ms);
CREATE INDEX api_calls_client_at ON api_calls (client_id, at_ms);
