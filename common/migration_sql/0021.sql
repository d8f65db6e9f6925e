
        CREATE TABLE frame_counts (
            minute TIMESTAMPTZ NOT NULL,
            camera_id TEXT NOT NULL,
            outcome TEXT NOT NULL,
            read_outcome TEXT,
            frames BIGINT NOT NULL,
            CONSTRAINT frame_counts_key UNIQUE NULLS NOT DISTINCT (minute, camera_id, outcome, read_outcome)
        );
        CREATE INDEX frame_counts_emptied ON frame_counts (minute) WHERE frames = 0;
        CREATE TABLE frame_count_changes (
            minute TIMESTAMPTZ NOT NULL,
            camera_id TEXT NOT NULL,
            outcome TEXT NOT NULL,
            read_outcome TEXT,
            frames BIGINT NOT NULL
        );
        CREATE TABLE frame_counts_since (
            one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
            counted_from TIMESTAMPTZ NOT NULL
        );
        CREATE FUNCTION frames_counted() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO frame_count_changes (minute, camera_id, outcome, read_outcome, frames)
                    SELECT date_bin('1 minute', n.captured_at, '1970-01-01 00:00+00'), n.camera_id, n.outcome,
                        n.read_outcome, count(*) FROM new_rows n, frame_counts_since s
                    WHERE n.captured_at >= s.counted_from GROUP BY 1, 2, 3, 4;
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO frame_count_changes (minute, camera_id, outcome, read_outcome, frames)
                    SELECT date_bin('1 minute', o.captured_at, '1970-01-01 00:00+00'), o.camera_id, o.outcome,
                        o.read_outcome, -count(*) FROM old_rows o, frame_counts_since s
                    WHERE o.captured_at >= s.counted_from GROUP BY 1, 2, 3, 4;
            ELSE
                INSERT INTO frame_count_changes (minute, camera_id, outcome, read_outcome, frames)
                    SELECT date_bin('1 minute', c.captured_at, '1970-01-01 00:00+00'), c.camera_id, c.outcome,
                        c.read_outcome, sum(c.frames)
                    FROM (SELECT n.captured_at, n.camera_id, n.outcome, n.read_outcome, 1 AS frames FROM new_rows n
                          UNION ALL
                          SELECT o.captured_at, o.camera_id, o.outcome, o.read_outcome, -1 FROM old_rows o) AS c,
                        frame_counts_since s
                    WHERE c.captured_at >= s.counted_from GROUP BY 1, 2, 3, 4 HAVING sum(c.frames) <> 0;
            END IF;
            RETURN NULL;
        END $$;
        CREATE FUNCTION frames_truncated() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            DELETE FROM frame_counts;
            DELETE FROM frame_count_changes;
            RETURN NULL;
        END $$;
        CREATE FUNCTION frame_counts_merged() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $$
        DECLARE
            merged BIGINT;
        BEGIN
            IF NOT pg_try_advisory_xact_lock(7368517021) THEN
                RETURN 0;  -- another pool's merge is under way: this one's changes wait for the next round
            END IF;
            WITH moved AS (
                DELETE FROM frame_count_changes RETURNING minute, camera_id, outcome, read_outcome, frames
            ), added AS (
                INSERT INTO frame_counts AS counts (minute, camera_id, outcome, read_outcome, frames)
                    SELECT m.minute, m.camera_id, m.outcome, m.read_outcome, sum(m.frames) FROM moved m
                    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
                ON CONFLICT ON CONSTRAINT frame_counts_key DO UPDATE SET frames = counts.frames + excluded.frames
            )
            SELECT count(*) INTO merged FROM moved;
            DELETE FROM frame_counts WHERE frames = 0;
            RETURN merged;
        END $$;
        DO $$ BEGIN
            EXECUTE format('ALTER FUNCTION frames_counted() SET search_path = %I, pg_temp', current_schema());
            EXECUTE format('ALTER FUNCTION frames_truncated() SET search_path = %I, pg_temp', current_schema());
            EXECUTE format('ALTER FUNCTION frame_counts_merged() SET search_path = %I, pg_temp', current_schema());
        END $$;
        LOCK TABLE frames IN SHARE ROW EXCLUSIVE MODE;
        INSERT INTO frame_counts_since (counted_from) SELECT CASE WHEN EXISTS (SELECT FROM frames)
            THEN date_bin('1 minute', now(), '1970-01-01 00:00+00') + interval '1 minute' ELSE '-infinity' END;
        CREATE TRIGGER frames_counted_added AFTER INSERT ON frames REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION frames_counted();
        CREATE TRIGGER frames_counted_updated AFTER UPDATE ON frames REFERENCING OLD TABLE AS old_rows
            NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION frames_counted();
        CREATE TRIGGER frames_counted_removed AFTER DELETE ON frames REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION frames_counted();
        CREATE TRIGGER frames_counted_truncated AFTER TRUNCATE ON frames
            FOR EACH STATEMENT EXECUTE FUNCTION frames_truncated();
        INSERT INTO frame_counts (minute, camera_id, outcome, read_outcome, frames)
            WITH RECURSIVE cameras(camera_id) AS (
                (SELECT camera_id FROM frames ORDER BY camera_id LIMIT 1)
                UNION ALL
                SELECT (SELECT f.camera_id FROM frames f WHERE f.camera_id > cameras.camera_id
                        ORDER BY f.camera_id LIMIT 1)
                FROM cameras WHERE cameras.camera_id IS NOT NULL
            )
            SELECT f.minute, cameras.camera_id, f.outcome, f.read_outcome, f.frames FROM cameras, LATERAL (
                SELECT date_bin('1 minute', captured_at, '1970-01-01 00:00+00') AS minute, outcome, read_outcome,
                    count(*) AS frames
                FROM frames
                WHERE camera_id = cameras.camera_id AND captured_at >= (SELECT counted_from FROM frame_counts_since)
                GROUP BY 1, 2, 3
            ) AS f;
        -- frames per camera, minute of capture, outcome and read outcome, for `alpr status` (common/frame_log.py's
        -- RECENT_OUTCOME_COUNTS): counting the frames of its hour visited every one, 4.6 us each, and 500
        -- cameras at 5 frames/s (9 million an hour) ran past its 5 s (a scale review). Every change to the
        -- frames log (a frame added, its outcome or read outcome changed, a frame pruned, the table truncated)
        -- is written by Postgres, one statement's worth at a time, as rows added to frame_count_changes, never
        -- updated: concurrent writers of one camera's minute wait for no lock. The redactor's and OCR pools'
        -- duties (frame_counts_merged) move them into frame_counts in one statement, in key order; a reader sums both.
        -- Counted: the frames captured from counted_from on; a log with frames already is counted from the
        -- minute after the upgrade's (those already there captured since, found camera by camera), and a
        -- reader counts older frames one by one: counting them all here took 2.1 s a million frames with the
        -- chain's writes held (a city's 30 days: hours)
        