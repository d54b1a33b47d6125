-- vakt schema v1 (PostgreSQL). Times are Unix milliseconds (UTC); booleans are BOOLEAN.
CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    region        TEXT,
    password_hash TEXT NOT NULL,
    totp_secret   TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES users(username),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users(username),
    created_at BIGINT NOT NULL
);

CREATE TABLE persons (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    phone              TEXT,
    address_text       TEXT,
    address_lat        DOUBLE PRECISION,
    address_lon        DOUBLE PRECISION,
    protected_identity BOOLEAN NOT NULL,
    region             TEXT,
    created_at         BIGINT NOT NULL
);

CREATE TABLE cases (
    id            TEXT PRIMARY KEY,
    reference     TEXT NOT NULL UNIQUE,
    person_id     TEXT NOT NULL REFERENCES persons(id),
    risk          TEXT NOT NULL,
    region        TEXT NOT NULL,
    response_plan TEXT,
    relatives     TEXT NOT NULL DEFAULT '[]',
    created_at    BIGINT NOT NULL,
    closed_at     BIGINT,
    -- Set when personal data of the closed case was erased (retention).
    erased_at     BIGINT
);

CREATE TABLE orders (
    id                     TEXT PRIMARY KEY,
    case_id                TEXT NOT NULL REFERENCES cases(id),
    kind                   TEXT NOT NULL,
    restrained_name        TEXT NOT NULL,
    restrained_description TEXT,
    restrained_vehicle     TEXT,
    restrained_photo_ref   TEXT,
    valid_from             BIGINT NOT NULL,
    valid_to               BIGINT NOT NULL,
    zones                  TEXT NOT NULL,
    tag_device_id          TEXT,
    created_at             BIGINT NOT NULL
);
CREATE INDEX orders_by_case ON orders(case_id);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    model            TEXT,
    key_hex          TEXT NOT NULL,
    supervision_class TEXT NOT NULL DEFAULT 'standard',
    hb_interval_s    BIGINT,
    status           TEXT NOT NULL,
    case_id          TEXT REFERENCES cases(id),
    holder_person_id TEXT REFERENCES persons(id),
    created_at       BIGINT NOT NULL,
    issued_at        BIGINT,
    returned_at      BIGINT,
    return_reason    TEXT,
    last_heard_at    BIGINT,
    battery          BIGINT,
    charging         BOOLEAN,
    rssi             BIGINT,
    fw               TEXT,
    reported_model   TEXT,
    hello_hb_s       BIGINT,
    online           BOOLEAN,
    last_boot        BIGINT,
    last_seq         BIGINT,
    last_test_at     BIGINT,
    last_lat         DOUBLE PRECISION,
    last_lon         DOUBLE PRECISION,
    last_pos_at      BIGINT
);

-- Supervision reads back the heartbeats other instances took in.
CREATE INDEX devices_by_last_heard ON devices(last_heard_at);

CREATE TABLE alerts (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    priority        BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    incident        TEXT NOT NULL,
    state           TEXT NOT NULL,
    case_id         TEXT,
    device_id       TEXT,
    region          TEXT,
    first_at        BIGINT NOT NULL,
    last_at         BIGINT NOT NULL,
    count           BIGINT NOT NULL,
    lat             DOUBLE PRECISION,
    lon             DOUBLE PRECISION,
    acc_m           BIGINT,
    -- What happened (accumulating over a repeated incident), then everything read by officers.
    trigger_reasons TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    overdue         BOOLEAN NOT NULL DEFAULT FALSE,
    back_online     BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_pressed  BOOLEAN NOT NULL DEFAULT FALSE,
    origin_boot     BIGINT,
    origin_seq      BIGINT,
    acknowledged_by TEXT,
    acknowledged_at BIGINT,
    resolved_by     TEXT,
    resolved_at     BIGINT,
    outcome         TEXT,
    note            TEXT
);
-- One incident, one alert: at most one unresolved alert per device and incident class.
CREATE UNIQUE INDEX alerts_one_open_incident ON alerts(device_id, incident) WHERE state <> 'resolved';
CREATE INDEX alerts_by_state ON alerts(state, priority, first_at);

CREATE TABLE alert_history (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alerts(id),
    at       BIGINT NOT NULL,
    actor    TEXT,
    action   TEXT NOT NULL,
    note     TEXT
);
CREATE INDEX alert_history_by_alert ON alert_history(alert_id);

-- Every change of an alert, in order: the SSE stream's ids and its catch-up.
CREATE TABLE alert_events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id BIGINT NOT NULL,
    at       BIGINT NOT NULL
);

-- Alarm messages taken in: a redelivery of the same (device, boot, seq) changes nothing.
CREATE TABLE device_messages (
    device_id   TEXT NOT NULL,
    boot        BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    alert_id    BIGINT,
    PRIMARY KEY (device_id, boot, seq)
);

CREATE TABLE security_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,
    device_id TEXT,
    kind      TEXT NOT NULL,
    detail    TEXT NOT NULL
);

CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
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
    last_seen BIGINT NOT NULL,
    is_leader BOOLEAN NOT NULL DEFAULT FALSE
);
