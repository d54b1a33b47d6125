-- The last one-time-code time step a user logged in with. A code is good for one login:
-- kept in the database rather than in one process's memory, a code seen over a shoulder
-- opens no second session after a restart or on another instance. `totp_secret` itself
-- keeps its column: secrets stored in the clear are sealed by vakt at start (the master
-- key never reaches the database), and a plain one still opens until then.
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
