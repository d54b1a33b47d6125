-- The MQTT client ids the broker has held a persistent session for. A connection under one
-- of them that finds no session has lost one (a broker without persistence, an expired
-- session), unlike the first connection of a new id. Removed when vakt ends a session on
-- purpose (the leader draining a dead instance).
CREATE TABLE broker_sessions (
    client_id TEXT PRIMARY KEY,
    since     INTEGER NOT NULL
);
