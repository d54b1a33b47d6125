-- Device key rotation: the next key waits here (sealed like key_hex) until the device has
-- signed a message with it; announced_at says when the signed cfg carrying it was published.
ALTER TABLE devices ADD COLUMN next_key_hex TEXT;
ALTER TABLE devices ADD COLUMN key_rotation_requested_at INTEGER;
ALTER TABLE devices ADD COLUMN key_rotation_announced_at INTEGER;
ALTER TABLE devices ADD COLUMN key_rotated_at INTEGER;

-- The service looks for rotations to announce every few seconds; only the few under way
-- are indexed, so that costs nothing at a million devices.
CREATE INDEX devices_key_rotation_to_announce ON devices (id)
    WHERE next_key_hex IS NOT NULL AND key_rotation_announced_at IS NULL;

-- The backend's own history notes keep their facts beside the English words (a code and
-- its values as JSON), so a console can word them in the officer's language.
ALTER TABLE alert_history ADD COLUMN note_facts TEXT;
