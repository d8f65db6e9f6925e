
        ALTER TABLE frames ADD COLUMN read_outcome TEXT
            CONSTRAINT frames_read_outcome_known CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost'));
        CREATE INDEX frames_reads_pending ON frames (done_at) WHERE read_outcome = 'pending';
        