-- Each study belongs to one case (intake's rule "one study, one case"), held by the database
-- itself: two uploads of one study to two cases at the same moment cannot both commit (a
-- check of the instances table before the insert let both through).
CREATE TABLE study_cases (
    study_uid TEXT PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (id)
);

INSERT INTO study_cases (study_uid, case_id)
    SELECT study_uid, MIN(case_id) FROM instances GROUP BY study_uid;
