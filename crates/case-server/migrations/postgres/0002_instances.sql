-- DICOM instances of each case. The bytes live in the object store under object_key (the
-- sha256 of the file); the columns here answer QIDO-RS and the case record without opening
-- objects. metadata_json is the instance's DICOM JSON (PS3.18 F.2) without Pixel Data.
CREATE TABLE instances (
    case_id TEXT NOT NULL REFERENCES cases (id),
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    object_key TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    modality TEXT NOT NULL,
    -- YYYYMMDD, as DICOM writes it.
    study_date TEXT NOT NULL,
    study_description TEXT NOT NULL,
    accession_number TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    series_number BIGINT,
    series_description TEXT NOT NULL,
    instance_number BIGINT,
    pixel_rows BIGINT NOT NULL,
    pixel_columns BIGINT NOT NULL,
    number_of_frames BIGINT NOT NULL,
    metadata_json TEXT NOT NULL,
    stored_at TEXT NOT NULL,
    PRIMARY KEY (case_id, sop_uid)
);

CREATE INDEX instances_study ON instances (study_uid, series_uid);
CREATE INDEX instances_object ON instances (object_key);
