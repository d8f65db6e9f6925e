
        DELETE FROM frames
            WHERE NOT (captured_at >= '1970-01-01 00:00+00' AND captured_at < '10000-01-01 00:00+00');
        DELETE FROM plate_reads
            WHERE NOT (captured_at >= '1970-01-01 00:00+00' AND captured_at < '10000-01-01 00:00+00');
        DELETE FROM sightings WHERE NOT (first_seen >= '1970-01-01 00:00+00' AND first_seen < '10000-01-01 00:00+00'
            AND last_seen >= '1970-01-01 00:00+00' AND last_seen < '10000-01-01 00:00+00');
        DELETE FROM alerts
            WHERE NOT (captured_at >= '1970-01-01 00:00+00' AND captured_at < '10000-01-01 00:00+00');
        ALTER TABLE frames ADD CONSTRAINT frames_captured_at_in_reach
            CHECK (captured_at >= '1970-01-01 00:00+00' AND captured_at < '10000-01-01 00:00+00') NOT VALID;
        ALTER TABLE plate_reads ADD CONSTRAINT plate_reads_captured_at_in_reach
            CHECK (captured_at >= '1970-01-01 00:00+00' AND captured_at < '10000-01-01 00:00+00') NOT VALID;
        ALTER TABLE sightings ADD CONSTRAINT sightings_first_seen_in_reach
            CHECK (first_seen >= '1970-01-01 00:00+00' AND first_seen < '10000-01-01 00:00+00') NOT VALID;
        ALTER TABLE sightings ADD CONSTRAINT sightings_last_seen_in_reach
            CHECK (last_seen >= '1970-01-01 00:00+00' AND last_seen < '10000-01-01 00:00+00') NOT VALID;
        ALTER TABLE alerts ADD CONSTRAINT alerts_captured_at_in_reach
            CHECK (captured_at >= '1970-01-01 00:00+00' AND captured_at < '10000-01-01 00:00+00') NOT VALID;
        -- times a datetime can hold, as the jobs' own checks allow (1970 to the year 9999): one row dated
        -- 'infinity' by a login with the workers' rights failed every export and wide search, and no prune
        -- reached it. Rows already so dated are no capture (the chain never writes them) and are deleted
        -- first: left, a NOT VALID check refused every later update of them, and the redactor's sweep of
        -- lost frames, and the keep folder's sweep after it, failed every round (a review). NOT VALID: the
        -- rows left are in reach, not scanned again under the exclusive lock
        