-- Secrets a tenant stores with a notifier, encrypted (ChaCha20-Poly1305,
-- the scheme and name as associated data) under a key kept outside the
-- database (uploads.secrets_key_file).
CREATE TABLE notifier_secrets (
    scheme TEXT NOT NULL REFERENCES notifiers (scheme) ON DELETE CASCADE,
    name TEXT NOT NULL,
    nonce BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (scheme, name)
);
