-- QIDO-RS study matching keys that PS3.18 (Table 6.7.1-1) requires beyond those of 0002:
-- Study Time (normalized to HHMMSS for range matching: colons of old files dropped, a
-- fraction dropped, a shorter value padded with zeros; '' when absent; the value as written
-- is answered from metadata_json), Referring Physician's Name and Study ID. Filled for the
-- instances already stored from their metadata_json, which holds every attribute (read as
-- json, not jsonb, which refuses a \u0000 a value may carry).
ALTER TABLE instances ADD COLUMN study_time TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN referring_physician TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN study_id TEXT NOT NULL DEFAULT '';

UPDATE instances SET
    study_time = COALESCE(metadata_json::json -> '00080030' -> 'Value' ->> 0, ''),
    referring_physician = COALESCE(metadata_json::json -> '00080090' -> 'Value' -> 0 ->> 'Alphabetic', ''),
    study_id = COALESCE(metadata_json::json -> '00200010' -> 'Value' ->> 0, '');

UPDATE instances SET study_time =
    substr(replace(replace(trim(study_time), ':', ''), ' ', '') || '000000', 1, 6)
WHERE trim(study_time) <> '';
