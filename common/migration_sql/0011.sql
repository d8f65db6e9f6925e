
        ALTER TABLE frames DROP CONSTRAINT frames_read_outcome_known;
        ALTER TABLE frames ADD CONSTRAINT frames_read_outcome_known
            CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost', 'refused', 'corrupt')) NOT VALID;
        -- corrupt: a crop there but not readable (not a JPEG, too large); it was recorded expired
        