-- A job store as ichnode 17867fe (the release before the outbox) wrote it: tests/store/test_outbox.py.
BEGIN TRANSACTION;
CREATE TABLE instances (
    sop_uid TEXT PRIMARY KEY, series_key TEXT NOT NULL REFERENCES series(key),
    path TEXT NOT NULL, size INTEGER NOT NULL, calling_aet TEXT, received REAL NOT NULL);
INSERT INTO "instances" VALUES('1.1.1','1.2/1.1','/spool/1.1',1,'CT1',100.0);
INSERT INTO "instances" VALUES('1.3.1','1.2/1.3','/spool/1.3',1,'CT1',100.0);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_key TEXT NOT NULL REFERENCES series(key),
    generation INTEGER NOT NULL, state TEXT NOT NULL, outcome TEXT, reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL, error TEXT,
    results TEXT NOT NULL DEFAULT '[]', timings TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL, updated REAL NOT NULL, analysis_starts INTEGER NOT NULL DEFAULT 0);
INSERT INTO "jobs" VALUES(1,'1.2/1.1',1,'done','analysed',NULL,1,NULL,NULL,'["/r/SEG_9.1.dcm", "/r/SR_9.2.dcm"]','{}',101.0,1.7961827002868635655e+09,1);
INSERT INTO "jobs" VALUES(2,'1.2/1.3',1,'retry_wait','analysed',NULL,2,500.0,'pacs down','["/r/SEG_9.1.dcm", "/r/SR_9.2.dcm"]','{}',101.0,1.79618270029650974276e+09,1);
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, channel TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
    created REAL NOT NULL, sent_at REAL, time_to_notification_s REAL, ack_code TEXT,
    control_id TEXT, error TEXT);
INSERT INTO "notifications" VALUES(1,1,'mllp','sent',1,103.0,103.0,104.0,4.0,'AA','ICH1-1-1',NULL);
INSERT INTO "notifications" VALUES(2,2,'mllp','pending',0,103.0,103.0,NULL,NULL,NULL,NULL,NULL);
CREATE TABLE purges (
    series_key TEXT NOT NULL, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL, job_id INTEGER,
    files INTEGER NOT NULL, bytes INTEGER NOT NULL, purged REAL NOT NULL);
CREATE TABLE schema_versions (owner TEXT PRIMARY KEY, version INTEGER NOT NULL);
INSERT INTO "schema_versions" VALUES('jobs',1);
INSERT INTO "schema_versions" VALUES('worklist',0);
CREATE TABLE sent (
    job_id INTEGER NOT NULL, destination TEXT NOT NULL, sop_uid TEXT NOT NULL, sent REAL NOT NULL,
    PRIMARY KEY (job_id, destination, sop_uid));
INSERT INTO "sent" VALUES(1,'pacs','9.1',1.7961827002876691818e+09);
INSERT INTO "sent" VALUES(1,'pacs','9.2',1.7961827002880842686e+09);
INSERT INTO "sent" VALUES(2,'pacs','9.1',1.79618270029748463637e+09);
CREATE TABLE series (
    key TEXT PRIMARY KEY, study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,
    modality TEXT, description TEXT, expected_count INTEGER,
    instance_count INTEGER NOT NULL DEFAULT 0, generation INTEGER NOT NULL DEFAULT 1,
    open INTEGER NOT NULL DEFAULT 1, first_received REAL NOT NULL, last_received REAL NOT NULL);
INSERT INTO "series" VALUES('1.2/1.1','1.2','1.1','CT','Head',NULL,1,1,0,100.0,100.0);
INSERT INTO "series" VALUES('1.2/1.3','1.2','1.3','CT','Head',NULL,1,1,0,100.0,100.0);
CREATE TABLE worklist (
    job_id INTEGER PRIMARY KEY, series_key TEXT NOT NULL, study_uid TEXT, series_uid TEXT,
    priority TEXT NOT NULL, priority_rank INTEGER NOT NULL, reason TEXT,
    flags TEXT NOT NULL DEFAULT '[]', volumes TEXT NOT NULL DEFAULT '{}',
    probabilities TEXT NOT NULL DEFAULT '{}', total_ml REAL, abc2_ml REAL, abc2_ratio REAL,
    lesion_count INTEGER, iph_location TEXT, models TEXT NOT NULL DEFAULT '[]',
    thumbnail TEXT, key_images TEXT NOT NULL DEFAULT '[]',
    patient_name TEXT, patient_id TEXT, accession TEXT, study_description TEXT,
    series_description TEXT, study_date TEXT, study_time TEXT, modality TEXT, scanner_model TEXT,
    slices INTEGER, arrived REAL NOT NULL, analysed REAL NOT NULL, updated REAL NOT NULL,
    results_delivered INTEGER NOT NULL DEFAULT 0,
    acknowledged_by TEXT, acknowledged_at REAL, dismissed_by TEXT, dismissed_at REAL);
INSERT INTO "worklist" VALUES(1,'1.2/x','1.2','x','critical',0,NULL,'[]','{}','{}',NULL,NULL,NULL,NULL,NULL,'[]',NULL,'[]','DOE^JANE','PID-1',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,100.0,102.0,1.79618270029809713357e+09,0,NULL,NULL,NULL,NULL);
INSERT INTO "worklist" VALUES(2,'1.2/x','1.2','x','critical',0,NULL,'[]','{}','{}',NULL,NULL,NULL,NULL,NULL,'[]',NULL,'[]','DOE^JANE','PID-1',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,100.0,102.0,1.79618270029865980145e+09,0,NULL,NULL,NULL,NULL);
CREATE INDEX instances_by_series ON instances(series_key);
CREATE INDEX jobs_by_state ON jobs(state);
CREATE INDEX worklist_by_series ON worklist(series_key);
CREATE INDEX notifications_by_state ON notifications(state, next_attempt);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('jobs',2);
INSERT INTO "sqlite_sequence" VALUES('notifications',2);
COMMIT;
