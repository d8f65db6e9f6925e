
        ALTER TABLE frames DROP CONSTRAINT frames_read_outcome_known;
        ALTER TABLE frames ADD CONSTRAINT frames_read_outcome_known
            CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost', 'refused')) NOT VALID;
        -- NOT VALID: new rows are checked; the rows there met the narrower check already, and validating
        -- them would scan the whole frames log under the upgrade's exclusive lock, stopping the chain
        