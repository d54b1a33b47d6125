-- vakt schema v1 (SQLite). Times are Unix milliseconds (UTC); booleans are 0/1.
CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    region        TEXT,
    password_hash TEXT NOT NULL,
    totp_secret   TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES users(username),
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users(username),
    created_at INTEGER NOT NULL
);

CREATE TABLE persons (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    phone              TEXT,
    address_text       TEXT,
    address_lat        REAL,
    address_lon        REAL,
    protected_identity BOOLEAN NOT NULL,
    region             TEXT,
    created_at         INTEGER NOT NULL
);

CREATE TABLE cases (
    id            TEXT PRIMARY KEY,
    reference     TEXT NOT NULL UNIQUE,
    person_id     TEXT NOT NULL REFERENCES persons(id),
    risk          TEXT NOT NULL,
    region        TEXT NOT NULL,
    response_plan TEXT,
    relatives     TEXT NOT NULL DEFAULT '[]',
    created_at    INTEGER NOT NULL,
    closed_at     INTEGER,
    -- Set when personal data of the closed case was erased (retention).
    erased_at     INTEGER
);

CREATE TABLE orders (
    id                     TEXT PRIMARY KEY,
    case_id                TEXT NOT NULL REFERENCES cases(id),
    kind                   TEXT NOT NULL,
    restrained_name        TEXT NOT NULL,
    restrained_description TEXT,
    restrained_vehicle     TEXT,
    restrained_photo_ref   TEXT,
    valid_from             INTEGER NOT NULL,
    valid_to               INTEGER NOT NULL,
    zones                  TEXT NOT NULL,
    tag_device_id          TEXT,
    created_at             INTEGER NOT NULL
);
CREATE INDEX orders_by_case ON orders(case_id);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    model            TEXT,
    key_hex          TEXT NOT NULL,
    supervision_class TEXT NOT NULL DEFAULT 'standard',
    hb_interval_s    INTEGER,
    status           TEXT NOT NULL,
    case_id          TEXT REFERENCES cases(id),
    holder_person_id TEXT REFERENCES persons(id),
    created_at       INTEGER NOT NULL,
    issued_at        INTEGER,
    returned_at      INTEGER,
    return_reason    TEXT,
    last_heard_at    INTEGER,
    battery          INTEGER,
    charging         BOOLEAN,
    rssi             INTEGER,
    fw               TEXT,
    reported_model   TEXT,
    hello_hb_s       INTEGER,
    online           BOOLEAN,
    last_boot        INTEGER,
    last_seq         INTEGER,
    last_test_at     INTEGER,
    last_lat         REAL,
    last_lon         REAL,
    last_pos_at      INTEGER
);

-- Supervision reads back the heartbeats other instances took in.
CREATE INDEX devices_by_last_heard ON devices(last_heard_at);

CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    priority        INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    incident        TEXT NOT NULL,
    state           TEXT NOT NULL,
    case_id         TEXT,
    device_id       TEXT,
    region          TEXT,
    first_at        INTEGER NOT NULL,
    last_at         INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    lat             REAL,
    lon             REAL,
    acc_m           INTEGER,
    -- What happened (accumulating over a repeated incident), then everything read by officers.
    trigger_reasons TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    overdue         BOOLEAN NOT NULL DEFAULT 0,
    back_online     BOOLEAN NOT NULL DEFAULT 0,
    cancel_pressed  BOOLEAN NOT NULL DEFAULT 0,
    origin_boot     INTEGER,
    origin_seq      INTEGER,
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    resolved_by     TEXT,
    resolved_at     INTEGER,
    outcome         TEXT,
    note            TEXT
);
-- One incident, one alert: at most one unresolved alert per device and incident class.
CREATE UNIQUE INDEX alerts_one_open_incident ON alerts(device_id, incident) WHERE state <> 'resolved';
CREATE INDEX alerts_by_state ON alerts(state, priority, first_at);

CREATE TABLE alert_history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    at       INTEGER NOT NULL,
    actor    TEXT,
    action   TEXT NOT NULL,
    note     TEXT
);
CREATE INDEX alert_history_by_alert ON alert_history(alert_id);

-- Every change of an alert, in order: the SSE stream's ids and its catch-up.
CREATE TABLE alert_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL,
    at       INTEGER NOT NULL
);

-- Alarm messages taken in: a redelivery of the same (device, boot, seq) changes nothing.
CREATE TABLE device_messages (
    device_id   TEXT NOT NULL,
    boot        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    alert_id    INTEGER,
    PRIMARY KEY (device_id, boot, seq)
);

CREATE TABLE security_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    device_id TEXT,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT,
    action  TEXT NOT NULL,
    subject TEXT,
    case_id TEXT,
    detail  TEXT,
    -- Hash chain (src/audit.rs): an edited or deleted row breaks it.
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_by_case ON audit_log(case_id);
CREATE INDEX audit_by_actor ON audit_log(actor, at);

-- The instances sharing a broker subscription: a dead one's persistent session is drained
-- and ended by the leader, so its share of the devices is not queued for nobody.
CREATE TABLE instances (
    client_id TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL,
    is_leader BOOLEAN NOT NULL DEFAULT 0
);
