-- Overread case server, first schema (PostgreSQL): the same tables, columns and rules as
-- migrations/sqlite/0001_init.sql. Reports and audit rows are append-only: triggers refuse
-- every UPDATE and DELETE on them (TRUNCATE too).

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('radiologist', 'qa_reviewer', 'coordinator', 'admin')),
    display_name TEXT NOT NULL,
    -- Comma-separated, e.g. 'neuro,msk'.
    subspecialties TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE sessions (
    -- sha256 (hex) of the bearer token: a stolen database does not yield live tokens.
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    expires_unix BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    public_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    subspecialty TEXT NOT NULL,
    -- Patient and referral as JSON (case-protocol types), kept as text: the exact bytes.
    patient_json TEXT NOT NULL,
    referral_json TEXT NOT NULL,
    assigned_to TEXT REFERENCES users (id),
    created_at TEXT NOT NULL,
    ready_at TEXT,
    due_at TEXT,
    priority_rank BIGINT NOT NULL
);

CREATE TABLE reports (
    report_hash TEXT PRIMARY KEY,
    -- Arrival order (SQLite's rowid plays this part there).
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    case_id TEXT NOT NULL REFERENCES cases (id),
    kind TEXT NOT NULL,
    amends TEXT REFERENCES reports (report_hash),
    author_id TEXT NOT NULL REFERENCES users (id),
    key_id TEXT NOT NULL REFERENCES signing_keys (key_id),
    -- The signed report exactly as received (JSON) and its canonical bytes.
    signed_json TEXT NOT NULL,
    canonical BYTEA NOT NULL,
    received_at TEXT NOT NULL
);

CREATE FUNCTION overread_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER reports_no_update BEFORE UPDATE OR DELETE ON reports
    FOR EACH ROW EXECUTE FUNCTION overread_append_only();
CREATE TRIGGER reports_no_truncate BEFORE TRUNCATE ON reports
    FOR EACH STATEMENT EXECUTE FUNCTION overread_append_only();

CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TEXT NOT NULL,
    user_id TEXT,
    action TEXT NOT NULL,
    case_id TEXT,
    remote_addr TEXT,
    detail TEXT NOT NULL DEFAULT ''
);

CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION overread_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION overread_append_only();

CREATE INDEX cases_assigned ON cases (assigned_to, priority_rank, due_at);
CREATE INDEX reports_case ON reports (case_id);
CREATE INDEX audit_case ON audit (case_id);
