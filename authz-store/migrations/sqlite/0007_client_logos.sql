-- TPP logos shown on the consent page and the dashboard. The page may fetch nothing
-- from outside the platform, so a logo is copied in once (registration, provisioning,
-- the developer portal) and served by us. Bytes are base64 text so one column type
-- serves both backends; at most 64 KiB of image, checked before it is stored.
CREATE TABLE client_logos (
    client_id    TEXT PRIMARY KEY NOT NULL,
    content_type TEXT NOT NULL,
    data_b64     TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);
