
        ALTER TABLE frames DROP CONSTRAINT frames_read_outcome_known;
        ALTER TABLE frames ADD CONSTRAINT frames_read_outcome_known
            CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost', 'refused', 'corrupt', 'skipped')) NOT VALID;
        -- skipped: not begun within its OCR job's time budget (a job of more plates than its timeout timed
        -- out on every attempt, and none of its frames was read)
        