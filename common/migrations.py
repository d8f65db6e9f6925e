"""The Postgres schema as numbered migrations, applied in order by `alpr db upgrade` (common/schema_upgrade.py):
the frames log, the plate reads, the watch-lists, the sightings and their cursors, the alerts and
their deliveries, and the audit records of plate searches and exports (common/audit.py)."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE cameras (
            camera_id TEXT PRIMARY KEY,
            region TEXT NOT NULL,
            enabled BOOLEAN NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE frames (
            frame_id TEXT PRIMARY KEY,
            camera_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            frame_index BIGINT NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            plates INTEGER NOT NULL,
            stage_ms JSONB NOT NULL,
            kept_path TEXT,
            done_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX frames_by_camera_time ON frames (camera_id, captured_at);
        CREATE TABLE plate_reads (
            id BIGSERIAL PRIMARY KEY,
            camera_id TEXT NOT NULL,
            frame_id TEXT NOT NULL,
            frame_index BIGINT NOT NULL,
            frame_time_s DOUBLE PRECISION NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            plate_index INTEGER NOT NULL,
            plate_text TEXT NOT NULL,
            confidence REAL NOT NULL,
            format_name TEXT,
            format_match BOOLEAN NOT NULL,
            candidates JSONB NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
            detection_confidence REAL NOT NULL,
            stage_ms JSONB NOT NULL,
            logged_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (frame_id, plate_index)
        );
        CREATE INDEX plate_reads_by_plate ON plate_reads (plate_text);
        CREATE INDEX plate_reads_by_camera_time ON plate_reads (camera_id, captured_at);
        """,
    ),
    (
        2,
        """
        ALTER TABLE frames ADD COLUMN outcome TEXT NOT NULL DEFAULT 'done';
        CREATE INDEX frames_not_done ON frames (camera_id, captured_at) WHERE outcome <> 'done';
        """,
    ),
    (
        3,
        """
        ALTER TABLE frames ADD COLUMN detail TEXT;
        UPDATE frames SET outcome = 'expired', detail = substr(outcome, 9) WHERE outcome LIKE 'expired %';
        ALTER TABLE frames ADD CONSTRAINT frames_outcome_known
            CHECK (outcome IN ('pending', 'done', 'skipped', 'expired', 'corrupt', 'lost'));
        CREATE INDEX frames_pending ON frames (captured_at) WHERE outcome = 'pending';
        """,
    ),
    (
        4,
        """
        ALTER TABLE plate_reads RENAME COLUMN frame_time_s TO source_time_s;
        """,
    ),
    (
        5,
        """
        ALTER TABLE frames ADD COLUMN read_outcome TEXT
            CONSTRAINT frames_read_outcome_known CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost'));
        CREATE INDEX frames_reads_pending ON frames (done_at) WHERE read_outcome = 'pending';
        """,
    ),
    (
        6,
        """
        CREATE TABLE watchlist (
            list_name TEXT NOT NULL DEFAULT 'default' CONSTRAINT watchlist_list_name_valid
                CHECK (list_name ~ '^[A-Za-z0-9_.-]{1,64}$'),
            plate TEXT NOT NULL CONSTRAINT watchlist_plate_normalised CHECK (plate ~ '^[A-Z0-9]{1,16}$'),
            reason TEXT NOT NULL CONSTRAINT watchlist_reason_length CHECK (length(reason) BETWEEN 1 AND 200),
            expires_at TIMESTAMPTZ,
            added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (list_name, plate)
        );
        """,
    ),
    (
        7,
        """
        CREATE TABLE sightings (
            sighting_id TEXT PRIMARY KEY,
            camera_id TEXT NOT NULL,
            plate TEXT NOT NULL,
            confidence REAL NOT NULL,
            first_seen TIMESTAMPTZ NOT NULL,
            last_seen TIMESTAMPTZ NOT NULL,
            reads INTEGER NOT NULL,
            best_frame_id TEXT NOT NULL,
            best_confidence REAL NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
            texts JSONB NOT NULL,
            snapshot_path TEXT,
            closed_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX sightings_by_plate ON sightings (plate);
        CREATE INDEX sightings_by_camera_time ON sightings (camera_id, first_seen);
        CREATE INDEX plate_reads_by_camera_id ON plate_reads (camera_id, id);
        CREATE INDEX frames_unsettled ON frames (camera_id, captured_at)
            WHERE outcome = 'pending' OR read_outcome = 'pending';
        CREATE TABLE camera_watermarks (
            camera_id TEXT PRIMARY KEY,
            recorded_until_s DOUBLE PRECISION NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE sighting_cursors (
            camera_id TEXT PRIMARY KEY,
            grouped_until_s DOUBLE PRECISION NOT NULL DEFAULT 0,
            early_read_id BIGINT NOT NULL DEFAULT 0,
            state JSONB NOT NULL DEFAULT '{}',
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CONSTRAINT alerts_kind_known CHECK (kind IN ('read', 'sighting')),
            camera_id TEXT NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            body JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE alert_deliveries (
            alert_id TEXT NOT NULL REFERENCES alerts ON DELETE CASCADE,
            receiver TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CONSTRAINT alert_deliveries_status_known
                CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'rejected')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            queued_at TIMESTAMPTZ,
            retry_from TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_error TEXT,
            delivered_at TIMESTAMPTZ,
            PRIMARY KEY (alert_id, receiver)
        );
        CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
        """,
    ),
    (
        8,
        """
        ALTER TABLE frames DROP CONSTRAINT frames_read_outcome_known;
        ALTER TABLE frames ADD CONSTRAINT frames_read_outcome_known
            CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost', 'refused')) NOT VALID;
        -- NOT VALID: new rows are checked; the rows there met the narrower check already, and validating
        -- them would scan the whole frames log under the upgrade's exclusive lock, stopping the chain
        """,
    ),
    (
        9,
        """
        CREATE TABLE watchlist_version (one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one), version BIGINT NOT NULL);
        INSERT INTO watchlist_version (version) VALUES (1);
        CREATE FUNCTION watchlist_changed() RETURNS trigger LANGUAGE plpgsql
            SECURITY DEFINER SET search_path FROM CURRENT AS $$
        BEGIN
            UPDATE watchlist_version SET version = version + 1;
            RETURN NULL;
        END $$;
        -- as its owner, in this schema: a writer without a grant on the count, or with another
        -- search_path (a hand-written INSERT naming the schema), still counts its change
        CREATE TRIGGER watchlist_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON watchlist
            FOR EACH STATEMENT EXECUTE FUNCTION watchlist_changed();
        """,
    ),
    (
        10,
        """
        DO $$ BEGIN
            EXECUTE format('ALTER FUNCTION watchlist_changed() SET search_path = %I, pg_temp', current_schema());
        END $$;
        -- the owner's function ran with the schema's search_path, which put the caller's temporary
        -- schema first: a worker role could plant a temporary watchlist_version with a trigger of its
        -- own and run any SQL as the tables' owner (a superuser in Compose); pg_temp last, as Postgres
        -- advises for SECURITY DEFINER functions
        """,
    ),
    (
        11,
        """
        ALTER TABLE frames DROP CONSTRAINT frames_read_outcome_known;
        ALTER TABLE frames ADD CONSTRAINT frames_read_outcome_known
            CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost', 'refused', 'corrupt')) NOT VALID;
        -- corrupt: a crop there but not readable (not a JPEG, too large); it was recorded expired
        """,
    ),
    (
        12,
        """
        CREATE TABLE plate_searches (
            id BIGSERIAL PRIMARY KEY,
            searched_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            searched_by TEXT NOT NULL,
            database_user TEXT NOT NULL DEFAULT session_user,
            reason TEXT NOT NULL,
            plate TEXT NOT NULL,
            within REAL NOT NULL,
            since TIMESTAMPTZ,
            until TIMESTAMPTZ,
            camera_id TEXT,
            found INTEGER NOT NULL
        );
        CREATE FUNCTION plate_searches_kept() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the record of plate searches is append-only';
        END $$;
        CREATE TRIGGER plate_searches_kept BEFORE UPDATE OR DELETE ON plate_searches
            FOR EACH ROW EXECUTE FUNCTION plate_searches_kept();
        CREATE TRIGGER plate_searches_not_truncated BEFORE TRUNCATE ON plate_searches
            FOR EACH STATEMENT EXECUTE FUNCTION plate_searches_kept();
        CREATE FUNCTION plate_searches_stamped() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.database_user := session_user;
            NEW.searched_at := now();
            RETURN NEW;
        END $$;
        CREATE TRIGGER plate_searches_stamped BEFORE INSERT ON plate_searches
            FOR EACH ROW EXECUTE FUNCTION plate_searches_stamped();
        -- who and when are Postgres's to say: a role that may add a record may not date it back or
        -- name another login in it
        -- alpr search: every look-up of a plate, recorded before its results are given
        CREATE FUNCTION plate_search_keys(plate TEXT, texts JSONB) RETURNS TEXT[]
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT array_agg(DISTINCT key) FROM (
                SELECT translate(text, '0DQ1L852647', 'OOOIIBSZGAT') AS skeleton
                FROM (SELECT plate AS text UNION SELECT jsonb_array_elements(texts) ->> 0) AS read_texts
            ) AS skeletons, LATERAL (
                SELECT skeleton UNION ALL
                SELECT overlay(skeleton PLACING '' FROM position FOR 1)
                FROM generate_series(1, length(skeleton)) AS position
            ) AS keys (key)
        $$;
        CREATE INDEX sightings_by_search_key ON sightings USING gin (plate_search_keys(plate, texts));
        CREATE INDEX alerts_by_frame ON alerts ((body ->> 'frame_id'));
        CREATE INDEX alerts_by_camera_time ON alerts (camera_id, captured_at);
        -- alpr db prune keeps what an alert cites: its frame, and the sighting spanning its capture
        -- a sighting's plate and texts read, each with its look-alikes made one (common/plate_text.py's
        -- LOOKALIKE_GROUPS) and with each character left out in turn: two texts within one edit of each
        -- other, look-alikes free, share a key, so a search within 1.5 reads the few sightings found so
        """,
    ),
    (
        13,
        """
        CREATE TABLE plate_exports (
            id BIGSERIAL PRIMARY KEY,
            exported_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            exported_by TEXT NOT NULL,
            database_user TEXT NOT NULL DEFAULT session_user,
            reason TEXT NOT NULL,
            exported TEXT NOT NULL CONSTRAINT plate_exports_exported_known CHECK (exported IN ('reads', 'sightings')),
            csv_path TEXT NOT NULL
        );
        CREATE FUNCTION plate_exports_kept() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the record of exports is append-only';
        END $$;
        CREATE TRIGGER plate_exports_kept BEFORE UPDATE OR DELETE ON plate_exports
            FOR EACH ROW EXECUTE FUNCTION plate_exports_kept();
        CREATE TRIGGER plate_exports_not_truncated BEFORE TRUNCATE ON plate_exports
            FOR EACH STATEMENT EXECUTE FUNCTION plate_exports_kept();
        CREATE FUNCTION plate_exports_stamped() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.database_user := session_user;
            NEW.exported_at := now();
            RETURN NEW;
        END $$;
        CREATE TRIGGER plate_exports_stamped BEFORE INSERT ON plate_exports
            FOR EACH ROW EXECUTE FUNCTION plate_exports_stamped();
        -- alpr export: every dump of the reads or sightings, recorded (who, why, what, to which file) before
        -- its first row is written; when and the login are Postgres's to say, as for plate_searches
        """,
    ),
    (
        14,
        """
        CREATE INDEX alerts_by_sighting ON alerts ((body ->> 'sighting_id'));
        -- alpr db prune keeps the very sighting an alert names (common/retention.py), not every sighting
        -- at its camera spanning its capture: the car in the next lane, the car parked in view
        """,
    ),
    (
        15,
        """
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
        """,
    ),
    (
        16,
        """
        CREATE TABLE watchlist_changes (
            id BIGSERIAL PRIMARY KEY,
            changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            database_user TEXT NOT NULL DEFAULT session_user,
            changed_by TEXT,
            change TEXT NOT NULL CONSTRAINT watchlist_changes_change_known
                CHECK (change IN ('added', 'changed', 'removed')),
            list_name TEXT NOT NULL,
            plate TEXT NOT NULL,
            reason TEXT,
            expires_at TIMESTAMPTZ,
            was_reason TEXT,
            was_expires_at TIMESTAMPTZ
        );
        CREATE FUNCTION watchlist_recorded() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                INSERT INTO watchlist_changes (changed_by, change, list_name, plate, was_reason, was_expires_at)
                    SELECT NULLIF(current_setting('alpr.operator', true), ''), 'removed', w.list_name, w.plate,
                        w.reason, w.expires_at FROM watchlist w;
            ELSIF TG_OP = 'INSERT' THEN
                INSERT INTO watchlist_changes (changed_by, change, list_name, plate, reason, expires_at)
                    SELECT NULLIF(current_setting('alpr.operator', true), ''), 'added', n.list_name, n.plate,
                        n.reason, n.expires_at FROM new_rows n;
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO watchlist_changes (changed_by, change, list_name, plate, was_reason, was_expires_at)
                    SELECT NULLIF(current_setting('alpr.operator', true), ''), 'removed', o.list_name, o.plate,
                        o.reason, o.expires_at FROM old_rows o;
            ELSE
                INSERT INTO watchlist_changes (changed_by, change, list_name, plate, reason, expires_at, was_reason,
                                               was_expires_at)
                    SELECT NULLIF(current_setting('alpr.operator', true), ''),
                        CASE WHEN o.plate IS NULL THEN 'added' WHEN n.plate IS NULL THEN 'removed' ELSE 'changed' END,
                        coalesce(n.list_name, o.list_name), coalesce(n.plate, o.plate), n.reason, n.expires_at,
                        o.reason, o.expires_at
                    FROM new_rows n FULL JOIN old_rows o ON o.list_name = n.list_name AND o.plate = n.plate
                    WHERE o.plate IS NULL OR n.plate IS NULL
                        OR (n.reason, n.expires_at) IS DISTINCT FROM (o.reason, o.expires_at);
            END IF;
            RETURN NULL;
        END $$;
        DO $$ BEGIN
            EXECUTE format('ALTER FUNCTION watchlist_recorded() SET search_path = %I, pg_temp', current_schema());
        END $$;
        CREATE TRIGGER watchlist_added AFTER INSERT ON watchlist REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION watchlist_recorded();
        CREATE TRIGGER watchlist_updated AFTER UPDATE ON watchlist REFERENCING OLD TABLE AS old_rows
            NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION watchlist_recorded();
        CREATE TRIGGER watchlist_removed AFTER DELETE ON watchlist REFERENCING OLD TABLE AS old_rows
            FOR EACH STATEMENT EXECUTE FUNCTION watchlist_recorded();
        CREATE TRIGGER watchlist_truncated BEFORE TRUNCATE ON watchlist
            FOR EACH STATEMENT EXECUTE FUNCTION watchlist_recorded();
        CREATE FUNCTION watchlist_changes_kept() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the record of watch-list changes is append-only';
        END $$;
        CREATE TRIGGER watchlist_changes_kept BEFORE UPDATE OR DELETE ON watchlist_changes
            FOR EACH ROW EXECUTE FUNCTION watchlist_changes_kept();
        CREATE TRIGGER watchlist_changes_not_truncated BEFORE TRUNCATE ON watchlist_changes
            FOR EACH STATEMENT EXECUTE FUNCTION watchlist_changes_kept();
        -- who listed a plate, changed its reason or expiry, or took it off a list, when and as which login
        -- (and, where the command says, which operator: alpr watchlist --by): written by Postgres for every
        -- change however made (a hand-written statement too), one statement each (an import of 100,000
        -- entries is one insert), append-only, the owner's alone to read (common/db.py's grant_to); after
        -- a plate was removed nothing anywhere named it, nor who had listed it
        """,
    ),
    (
        17,
        r"""
        DO $migration$ BEGIN
            IF current_setting('server_encoding') = 'UTF8' THEN
                EXECUTE $check$ ALTER TABLE plate_searches ADD CONSTRAINT plate_searches_fields_as_recorded CHECK (
                    length(searched_by) BETWEEN 1 AND 100 AND length(reason) BETWEEN 3 AND 200
                    AND searched_by !~ '[[:cntrl:]\u0085\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]'
                    AND reason !~ '[[:cntrl:]\u0085\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]'
                    AND plate ~ '^[A-Z0-9]{1,16}$'
                    AND (camera_id IS NULL OR camera_id ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$')
                ) NOT VALID $check$;
                EXECUTE $check$ ALTER TABLE plate_exports ADD CONSTRAINT plate_exports_fields_as_recorded CHECK (
                    length(exported_by) BETWEEN 1 AND 100 AND length(reason) BETWEEN 3 AND 200
                    AND length(csv_path) BETWEEN 1 AND 4096
                    AND exported_by !~ '[[:cntrl:]\u0085\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]'
                    AND reason !~ '[[:cntrl:]\u0085\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]'
                    AND csv_path !~ '[[:cntrl:]\u0085\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]'
                ) NOT VALID $check$;
            END IF;
        END $migration$;
        -- the records hold what the commands let through (lengths, one line without control, line-break or
        -- direction characters, a plate, a camera id), checked by Postgres too: the workers' login, which may
        -- add to them, added a reason of 5,000,000 characters and a plate with a line break and a terminal's
        -- escape (a review), which append-only records keep for good. The operators are resolved as the
        -- checks are made (an SQL function's body was parsed with the inserting session's search_path:
        -- an operator !~ of its own turned the check off); UTF-8 databases only (elsewhere length() counts
        -- bytes and \u0085 is a byte of Å: legitimate reasons were refused); NOT VALID: the records already
        -- there are never updated
        """,
    ),
    (
        18,
        """
        ALTER TABLE frames DROP CONSTRAINT frames_read_outcome_known;
        ALTER TABLE frames ADD CONSTRAINT frames_read_outcome_known
            CHECK (read_outcome IN ('pending', 'done', 'expired', 'lost', 'refused', 'corrupt', 'skipped')) NOT VALID;
        -- skipped: not begun within its OCR job's time budget (a job of more plates than its timeout timed
        -- out on every attempt, and none of its frames was read)
        """,
    ),
    (
        19,
        """
        CREATE INDEX alerts_by_created ON alerts (created_at);
        -- the alert pool's round finds the alerts raised lately (common/alert_log.py's ADD_MISSING) without
        -- reading the whole log every second
        """,
    ),
    (
        20,
        """
        CREATE INDEX sightings_by_first_seen ON sightings (first_seen, sighting_id);
        CREATE INDEX sightings_by_last_seen ON sightings (last_seen);
        -- the sightings export streams in first-seen order from its first row (it sorted every sighting
        -- first: 1.58 million, 14.9 s to the first row, a scale review), and a search over a window with no
        -- camera finds the sightings that end within it (`alpr search --since` a last hour read every
        -- sighting: there was no index on time alone)
        """,
    ),
    (
        21,
        """
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
        """,
    ),
    (
        22,
        """
        ALTER TABLE alert_deliveries ADD COLUMN unrefused_attempt_at TIMESTAMPTZ;
        -- when an attempt of the delivery last ended otherwise than refused for now (common/alert_holds.py's
        -- UNREFUSED): a receiver's backlog is rejected for its refusals only where none did in the grace
        -- (REJECT_REFUSED). Nullable, no default: no rewrite of the table under its lock
        """,
    ),
    (
        23,
        """
        ALTER TABLE frames ADD COLUMN frame_ref JSONB;
        -- a pending frame's reference as its detect job carried it (common/jobs.py's FrameRef: its store key,
        -- region, ROI, source time, digest), written with the ingest node's pending row and cleared when
        -- the frame ends: `alpr replay --orphans` (common/orphan_replay.py) queues a frame no job holds again
        -- from it while its bytes live (the row lacked them: such frames waited for the sweep's `lost`).
        -- Nullable, no default: no rewrite of the table under its lock; rows of earlier releases have none
        """,
    ),
    (
        24,
        """
        CREATE FUNCTION frame_ref_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.frame_ref := NULL;
            RETURN NEW;
        END $$;
        CREATE TRIGGER frame_ref_dropped BEFORE UPDATE OF outcome ON frames FOR EACH ROW
            WHEN (NEW.outcome <> 'pending' AND NEW.frame_ref IS NOT NULL) EXECUTE FUNCTION frame_ref_dropped();
        -- a frame's reference (migration 23) dropped by Postgres in the update that ends the frame (a stage's
        -- final record, the sweep's `lost`, a release before's too), in the same row version: the workers
        -- set it NULL themselves, which needed a grant of UPDATE (frame_ref) that a rolled-back release's
        -- `alpr db upgrade --grant` revoked (every final record and sweep of the newer redactors still running
        -- refused). Left until the prune, 300 bytes to 5 KB a row (a camera's ROI) at 9 million rows an hour
        -- doubled the frames log or more; cleared by a later owner's UPDATE, every row written twice
        """,
    ),
]
"""(version, SQL) in order; a deployed migration is never edited, only followed by a new one."""

LOCK_MODES = ("SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE")
"""The table locks that make a migration wait for the chain: SHARE and above conflict with the workers'
writes (ROW EXCLUSIVE), ACCESS EXCLUSIVE with every reader too (ACCESS SHARE)."""

MIGRATION_LOCKS: dict[int, dict[str, str]] = {
    2: {"frames": "ACCESS EXCLUSIVE"},
    3: {"frames": "ACCESS EXCLUSIVE"},
    4: {"plate_reads": "ACCESS EXCLUSIVE"},
    5: {"frames": "ACCESS EXCLUSIVE"},
    7: {"frames": "SHARE", "plate_reads": "SHARE"},
    8: {"frames": "ACCESS EXCLUSIVE"},
    9: {"watchlist": "SHARE ROW EXCLUSIVE"},
    11: {"frames": "ACCESS EXCLUSIVE"},
    12: {"alerts": "SHARE", "sightings": "SHARE"},
    14: {"alerts": "SHARE"},
    15: {
        "alerts": "ACCESS EXCLUSIVE",
        "frames": "ACCESS EXCLUSIVE",
        "plate_reads": "ACCESS EXCLUSIVE",
        "sightings": "ACCESS EXCLUSIVE",
    },
    16: {"watchlist": "SHARE ROW EXCLUSIVE"},
    17: {"plate_exports": "ACCESS EXCLUSIVE", "plate_searches": "ACCESS EXCLUSIVE"},
    18: {"frames": "ACCESS EXCLUSIVE"},
    19: {"alerts": "SHARE"},
    20: {"sightings": "SHARE"},
    21: {"frames": "SHARE ROW EXCLUSIVE"},
    22: {"alert_deliveries": "ACCESS EXCLUSIVE"},
    23: {"frames": "ACCESS EXCLUSIVE"},
    24: {"frames": "SHARE ROW EXCLUSIVE"},
}
"""Version -> {table: the strongest of LOCK_MODES the migration takes on it}, for the tables there before
it (tests/common/test_migrations.py checks each against what Postgres records the migration holding).
`alpr db upgrade` asks for each in turn before the migration's SQL runs (common/schema_upgrade.py's
_apply_next), so a table held by a long reader makes the attempt fail before any of its work is done:
migration 15's full scans of the frames log and the plate reads were run again on every attempt while it
waited for the frames lock (a review). A new migration that locks a table the chain uses is added here
with it."""
