-- Structured threat and risk assessments of a case, kept as history: a new assessment is a
-- new row, never a change of an old one, and the case's risk (cases.risk) is set to the
-- latest one's in the same transaction. The only change a row ever sees is the erasure of
-- a closed case after retention, which empties its free text (factors, summary).
CREATE TABLE risk_assessments (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id       TEXT NOT NULL REFERENCES cases(id),
    -- 'PATRIARK', 'SARA', 'SRA' or 'other' (also a risk changed on the case without one).
    method        TEXT NOT NULL,
    risk          TEXT NOT NULL,
    -- The case's risk before this assessment.
    previous_risk TEXT NOT NULL,
    -- A JSON array of short texts: the risk factors considered.
    factors       TEXT NOT NULL DEFAULT '[]',
    summary       TEXT,
    -- The day of the next review, 'YYYY-MM-DD' (a UTC day; compared as text).
    next_review   TEXT,
    -- NULL: an operator at the command line.
    assessed_by   TEXT,
    assessed_at   BIGINT NOT NULL
);

CREATE INDEX risk_assessments_by_case ON risk_assessments(case_id, id);
