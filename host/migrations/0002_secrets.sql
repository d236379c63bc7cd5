-- Secrets a tenant stores with a notifier, each for the URLs under its
-- prefix, encrypted (ChaCha20-Poly1305, the scheme, name and prefix as
-- associated data) under a key kept outside the database
-- (uploads.secrets_key_file).
CREATE TABLE notifier_secrets (
    scheme TEXT NOT NULL REFERENCES notifiers (scheme) ON DELETE CASCADE,
    name TEXT NOT NULL,
    url_prefix TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scheme, name)
);
