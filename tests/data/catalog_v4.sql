-- A catalog as harbord made it at schema version 4 (PRAGMA user_version 4), before
-- capabilities had their own migration track: made with that version's migrations 1-4
-- (git show ca224b0:harbord/catalog.py) and one row in each table, then sqlite3's iterdump().
BEGIN TRANSACTION;
CREATE TABLE files (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
            item_id INTEGER REFERENCES items(id), object_hash TEXT REFERENCES objects(hash),
            source TEXT, job_id TEXT, present INTEGER NOT NULL DEFAULT 1, seen_at REAL NOT NULL,
            UNIQUE(path, size, mtime)
        );
INSERT INTO "files" VALUES(1,'/inbox/Night.of.the.Living.Dead.1968.mkv',1234,1764700000.0,1,'abababababababababababababababababababababababababababababababab','inbox','jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj',0,1764700000.0);
CREATE TABLE items (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            object_hash TEXT UNIQUE REFERENCES objects(hash),
            title TEXT, year INTEGER, media_type TEXT, season INTEGER, episode TEXT,
            parsed TEXT NOT NULL DEFAULT '{}', probe TEXT NOT NULL DEFAULT '{}',
            sidecars TEXT NOT NULL DEFAULT '{}', enrichment TEXT NOT NULL DEFAULT '{}',
            series TEXT NOT NULL DEFAULT '{}', user_fields TEXT NOT NULL DEFAULT '[]',
            source TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
        );
INSERT INTO "items" VALUES(1,'abababababababababababababababababababababababababababababababab','Night of the Living Dead',1968,'movie',NULL,NULL,'{"title": "Night of the Living Dead", "year": 1968}','{"duration": 5760.0}','{"subtitles:en": "/lib/objects/ab/abababababababababababababababababababababababababababababababab.en.srt"}','{}','{}','["title"]','inbox',1764700000.0,1764700000.0);
CREATE TABLE jobs (
            id TEXT PRIMARY KEY, path TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
            source TEXT NOT NULL, state TEXT NOT NULL, stage INTEGER NOT NULL DEFAULT 0,
            outcome TEXT, record TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL, last_error TEXT, created_at REAL NOT NULL,
            updated_at REAL NOT NULL, owner TEXT, UNIQUE(path, size, mtime)
        );
INSERT INTO "jobs" VALUES('jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj','/inbox/Night.of.the.Living.Dead.1968.mkv',1234,1764700000.0,'inbox','done',6,'ingested','{"id": "jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj", "path": "/inbox/Night.of.the.Living.Dead.1968.mkv", "size": 1234, "mtime": 1764700000.0}',1,NULL,NULL,1764700000.0,1764700000.0,NULL);
INSERT INTO "jobs" VALUES('kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk','/inbox/broken.mkv',10,1764700000.0,'inbox','failed',1,NULL,'{"id": "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", "path": "/inbox/broken.mkv", "size": 10, "mtime": 1764700000.0}',2,1764700060.0,'probe: corrupt',1764700000.0,1764700000.0,NULL);
CREATE TABLE objects (
            hash TEXT PRIMARY KEY, size INTEGER NOT NULL, ext TEXT NOT NULL,
            path TEXT NOT NULL, refcount INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL
        );
INSERT INTO "objects" VALUES('abababababababababababababababababababababababababababababababab',1234,'mkv','/lib/objects/ab/abababababababababababababababababababababababababababababababab.mkv',1,1764700000.0);
CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload TEXT NOT NULL,
            qos INTEGER NOT NULL DEFAULT 1, retain INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
INSERT INTO "outbox" VALUES(1,'harbord/events','{"type":"ingested"}',1,0,1764700000.0);
CREATE TABLE sidecars (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            kind TEXT NOT NULL, source TEXT NOT NULL, path TEXT NOT NULL,
            size INTEGER NOT NULL, job_id TEXT, seen_at REAL NOT NULL,
            UNIQUE(item_id, kind, source)
        );
INSERT INTO "sidecars" VALUES(1,1,'subtitles:en','/inbox/Night.of.the.Living.Dead.1968.en.srt','/lib/objects/ab/abababababababababababababababababababababababababababababababab.en.srt',99,'jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj',1764700000.0);
CREATE TABLE vectors (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            space TEXT NOT NULL, vector_id INTEGER NOT NULL,
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            vector_hash TEXT NOT NULL, input_hash TEXT NOT NULL, kind TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, deleted_at REAL,
            UNIQUE(space, vector_id)
        );
INSERT INTO "vectors" VALUES(1,'all-minilm-l6-v2',0,1,'cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd','efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef','text',0,1764700000.0,NULL);
CREATE TABLE vectors_staged (
            space TEXT NOT NULL, vector_id INTEGER NOT NULL,
            item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            vector_hash TEXT NOT NULL, input_hash TEXT NOT NULL, kind TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY(space, vector_id)
        );
CREATE INDEX files_item ON files(item_id);
CREATE INDEX jobs_state ON jobs(state, next_attempt_at);
CREATE UNIQUE INDEX vectors_live ON vectors(space, item_id) WHERE deleted = 0;
CREATE INDEX vectors_item ON vectors(item_id);
CREATE INDEX sidecars_source ON sidecars(source);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('items',1);
INSERT INTO "sqlite_sequence" VALUES('files',1);
INSERT INTO "sqlite_sequence" VALUES('sidecars',1);
INSERT INTO "sqlite_sequence" VALUES('vectors',1);
INSERT INTO "sqlite_sequence" VALUES('outbox',1);
COMMIT;
