
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
        