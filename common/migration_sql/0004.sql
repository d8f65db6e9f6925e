
        ALTER TABLE plate_reads RENAME COLUMN frame_time_s TO source_time_s;
        