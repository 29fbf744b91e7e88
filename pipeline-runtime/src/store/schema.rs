//! The run store's schema, as numbered migrations applied in order. `PRAGMA user_version`
//! holds the number of migrations applied; a database newer than this build is refused.

/// Each entry upgrades the schema by one version.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the first release.
    r#"
    CREATE TABLE runs (
        id              TEXT PRIMARY KEY,
        project         TEXT NOT NULL,
        name            TEXT NOT NULL,
        version         TEXT NOT NULL,
        run_number      INTEGER NOT NULL,
        status          TEXT NOT NULL,
        mode            TEXT NOT NULL,
        code_hash       TEXT NOT NULL,
        parameters      TEXT NOT NULL,
        tags            TEXT NOT NULL,
        configuration   TEXT NOT NULL DEFAULT '{}',
        started         REAL NOT NULL,
        ended           REAL,
        pid             INTEGER NOT NULL,
        stop_requested  TEXT
    );
    CREATE INDEX runs_by_pipeline ON runs (project, name, started);

    CREATE TABLE nodes (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        name        TEXT NOT NULL,
        component   TEXT NOT NULL,
        code_hash   TEXT NOT NULL,
        parents     TEXT NOT NULL,
        status      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        started     REAL,
        ended       REAL,
        error       TEXT,
        cache_key   TEXT,
        cache_hit   INTEGER NOT NULL DEFAULT 0,
        log_path    TEXT,
        PRIMARY KEY (run_id, name)
    );

    CREATE TABLE node_events (
        run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node    TEXT NOT NULL,
        status  TEXT NOT NULL,
        at      REAL NOT NULL
    );
    CREATE INDEX node_events_by_run ON node_events (run_id, node);

    CREATE TABLE artifacts (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node        TEXT NOT NULL,
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL,
        uri         TEXT NOT NULL,
        codec       TEXT,
        type_name   TEXT,
        size        INTEGER,
        checksum    TEXT,
        metadata    TEXT,
        created     REAL NOT NULL,
        PRIMARY KEY (run_id, node, kind, name)
    );

    CREATE TABLE metrics (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node        TEXT NOT NULL,
        title       TEXT NOT NULL,
        series      TEXT NOT NULL,
        iteration   INTEGER NOT NULL,
        value       REAL NOT NULL,
        at          REAL NOT NULL
    );
    CREATE INDEX metrics_by_run ON metrics (run_id);

    CREATE TABLE texts (
        run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        node    TEXT NOT NULL,
        text    TEXT NOT NULL,
        at      REAL NOT NULL
    );

    CREATE TABLE cache (
        key         TEXT PRIMARY KEY,
        component   TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        node        TEXT NOT NULL,
        outputs     TEXT NOT NULL,
        created     REAL NOT NULL
    );
    "#,
    // 2: a node's state changes live in its own row (`status@seconds;...`), so that recording
    // a step is one row write, not one per change; `node_events` keeps older runs' changes.
    r#"
    ALTER TABLE nodes ADD COLUMN history TEXT NOT NULL DEFAULT '';
    "#,
    // 3: where a run's controller lives and when it last showed it was alive, so that readers
    // can tell a live run from one whose controller died (`crashed`).
    r#"
    ALTER TABLE runs ADD COLUMN host TEXT;
    ALTER TABLE runs ADD COLUMN heartbeat REAL;
    "#,
    // 4: what started a run (its executable and pipeline function) and the run it was
    // started again from, so that `pipeline rerun` can start it again and show the link.
    r#"
    ALTER TABLE runs ADD COLUMN executable TEXT;
    ALTER TABLE runs ADD COLUMN entry TEXT;
    ALTER TABLE runs ADD COLUMN origin TEXT;
    "#,
    // 5: a key of what each step was given (its component's code and every input), so that a
    // resumed run can tell which finished steps it may reuse.
    r#"
    ALTER TABLE nodes ADD COLUMN resume_key TEXT;
    "#,
    // 6: how a run stopped on request is marked (`aborted`, `failed`, `completed`).
    r#"
    ALTER TABLE runs ADD COLUMN stop_mark TEXT;
    "#,
    // 7: a run started from another run's body (a nested pipeline) names that run and the
    // node it is there.
    r#"
    ALTER TABLE runs ADD COLUMN parent TEXT;
    ALTER TABLE runs ADD COLUMN parent_node TEXT;
    CREATE INDEX runs_by_parent ON runs (parent);
    "#,
    // 8: each step's `task_type` (training, data_processing...), to show and filter by.
    r#"
    ALTER TABLE nodes ADD COLUMN task_type TEXT;
    "#,
    // 9: each step's tags (its component's, and with `add_pipeline_tags` the run's).
    r#"
    ALTER TABLE nodes ADD COLUMN tags TEXT;
    "#,
    // 10: nodes' writes go to a log, one blob per run and batch (`node_log.rs`): a row per
    // node cost more than a debug-mode step. `nodes` keeps the runs recorded before.
    r#"
    CREATE TABLE node_log (
        run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        data    BLOB NOT NULL
    );
    CREATE INDEX node_log_by_run ON node_log (run_id);
    "#,
    // 11: a run's number and version are chosen without reading every run of its pipeline
    // (a run's start read them all: a millisecond per thousand runs). `versions` holds each
    // pipeline's versions with their code, in the order they first ran; a run's insert adds to
    // it (not a trigger: a statement with one needs a statement journal, a fifth of a short
    // recorded run's own thread with 16 KiB pages).
    r#"
    CREATE TABLE versions (
        project     TEXT NOT NULL,
        name        TEXT NOT NULL,
        version     TEXT NOT NULL,
        code_hash   TEXT NOT NULL
    );
    CREATE UNIQUE INDEX versions_by_pipeline ON versions (project, name, version, code_hash);
    INSERT OR IGNORE INTO versions (project, name, version, code_hash)
        SELECT project, name, version, code_hash FROM runs ORDER BY started, rowid;
    CREATE INDEX runs_by_number ON runs (project, name, run_number);
    "#,
];
