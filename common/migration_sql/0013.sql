
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
        