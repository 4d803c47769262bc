-- Delivery of signed reports to the referring physician. A report without a 'sent' row is
-- still to deliver (the reports table is the durable outbox); this row records the attempts.
CREATE TABLE deliveries (
    report_hash TEXT PRIMARY KEY REFERENCES reports (report_hash),
    case_id TEXT NOT NULL REFERENCES cases (id),
    -- 'retrying' or 'sent'.
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    transport TEXT NOT NULL,
    -- Where the transport put the document (a file path for the fax folder).
    reference TEXT,
    -- sha256 of the PDF as sent.
    document_sha256 TEXT,
    last_error TEXT,
    next_attempt_unix BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX deliveries_case ON deliveries (case_id);

-- Key images for a case's report (PNGs, e.g. from `overread render`), in the object store.
CREATE TABLE key_images (
    case_id TEXT NOT NULL REFERENCES cases (id),
    object_key TEXT NOT NULL,
    caption TEXT NOT NULL,
    uploaded_by TEXT NOT NULL REFERENCES users (id),
    uploaded_at TEXT NOT NULL,
    PRIMARY KEY (case_id, object_key)
);
