-- An account an admin disabled: it cannot log in and its sessions are gone. Its signed
-- reports stay verifiable (its keys are not revoked by this).
ALTER TABLE users ADD COLUMN disabled_at TEXT;
