-- A case's studies, found by the case: report intake checks every report's studies against
-- them (without this index each report scanned the whole table).
CREATE INDEX study_cases_by_case ON study_cases (case_id);
