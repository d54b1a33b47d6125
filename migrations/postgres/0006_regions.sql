-- The police regions and their local police areas, from a list instead of free text: a
-- case typed into "norr" was invisible to the officers of "Nord". vakt seeds the shipped
-- national list (data/police-regions.json) into an empty table at start; admins edit it.
-- The region columns of persons, cases, users and alerts stay text holding a region's
-- name and get no foreign key: rows written before the list keep their region as typed,
-- and `vakt regions check` reports those that match no region.
CREATE TABLE regions (
    code       TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    retired_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE local_areas (
    code        TEXT PRIMARY KEY,
    region_code TEXT NOT NULL REFERENCES regions (code),
    name        TEXT NOT NULL,
    retired_at  BIGINT,
    created_at  BIGINT NOT NULL,
    UNIQUE (region_code, name)
);
