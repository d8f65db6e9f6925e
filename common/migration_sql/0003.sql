
        ALTER TABLE frames ADD COLUMN detail TEXT;
        UPDATE frames SET outcome = 'expired', detail = substr(outcome, 9) WHERE outcome LIKE 'expired %';
        ALTER TABLE frames ADD CONSTRAINT frames_outcome_known
            CHECK (outcome IN ('pending', 'done', 'skipped', 'expired', 'corrupt', 'lost'));
        CREATE INDEX frames_pending ON frames (captured_at) WHERE outcome = 'pending';
        