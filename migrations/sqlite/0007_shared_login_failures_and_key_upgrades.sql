-- Failed logins, counted in the database so that every instance slows the same guesser:
-- with counters in each process's memory, two instances gave an attacker twice the guesses.
-- One row per username at a client address (scope 'user_at_address') and one per address
-- alone (scope 'address', username ''). Only counters and times are kept here; how long an
-- attempt waits is vakt's rule (src/web/throttle.rs). Rows quiet for a quarter of an hour
-- are forgotten and swept out.
CREATE TABLE login_failures (
    scope           TEXT NOT NULL CHECK (scope IN ('user_at_address', 'address')),
    address         TEXT NOT NULL,
    username        TEXT NOT NULL,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    PRIMARY KEY (scope, address, username)
);

CREATE INDEX login_failures_by_last_failure ON login_failures(last_failure_at);

-- The one-time upgrades of stored data that need the master key, which a migration never
-- sees, each recorded when done (src/store/upgrades.rs): 'audit_chain_keyed' (the audit
-- chain re-linked under the key derived from the master key) and 'secrets_sealed' (device
-- keys and one-time-code secrets an older version stored in the clear, sealed). Done once:
-- a value in the clear that turns up later is refused, never sealed.
CREATE TABLE data_upgrades (
    name    TEXT PRIMARY KEY,
    done_at INTEGER NOT NULL
);

-- Which master key this database's secrets are sealed and its audit chain linked under: a
-- value derived from the key (src/keys.rs) that tells nothing of it. An instance or a
-- command started with another master key is refused before it writes anything, instead
-- of ignoring every device and breaking the chain with links nobody else can check.
CREATE TABLE master_key_fingerprint (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL,
    since       INTEGER NOT NULL
);
