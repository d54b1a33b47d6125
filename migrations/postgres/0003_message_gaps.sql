-- Messages of a device that never arrived (seqs that left the anti-replay window unseen),
-- and alarms taken in after their seq had left it. Counted since the device was created;
-- the ingest adds to them in its batched health flush.
ALTER TABLE devices ADD COLUMN messages_missing BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN messages_late BIGINT NOT NULL DEFAULT 0;
