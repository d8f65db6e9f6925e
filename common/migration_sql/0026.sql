
        CREATE TABLE audit_retention (
            only_row BOOLEAN PRIMARY KEY DEFAULT true CONSTRAINT audit_retention_one_row CHECK (only_row),
            days DOUBLE PRECISION NOT NULL
                CONSTRAINT audit_retention_days_known CHECK (days = 0 OR days BETWEEN 1 AND 36500),
            set_at TIMESTAMPTZ
        );
        INSERT INTO audit_retention (days) VALUES (0);
        -- how long the records of plate searches and exports are kept, whoever asks: written by `alpr db upgrade`
        -- (as the owner) from its settings, ALPR_AUDIT_RETENTION_DAYS or its default rule (common/audit_policy.py),
        -- 0 (kept without limit: no record deleted) until it is (set_at NULL: never set); read by the pruner, changed
        -- by the owner alone. 0 or 1 to 36500 days (MAX_RETENTION_DAYS), as the settings: NaN, infinity or a million
        -- days passed `days >= 1`, and the prune's start failed on them (a review)
        CREATE OR REPLACE FUNCTION plate_searches_kept() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        DECLARE
            kept_days DOUBLE PRECISION;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                SELECT days INTO kept_days FROM audit_retention;
                IF kept_days > 0 AND OLD.searched_at < now() - make_interval(secs => greatest(kept_days, 1) * 86400) THEN
                    RETURN OLD;
                END IF;
                IF kept_days > 0 THEN
                    RAISE EXCEPTION 'the record of plate searches is append-only: a record is deleted past the database''s audit retention alone (% days, set by `alpr db upgrade` as the schema''s owner), never within it: prune with ALPR_AUDIT_RETENTION_DAYS % or more', kept_days, kept_days;
                END IF;
                RAISE EXCEPTION 'the record of plate searches is append-only: its records are kept without limit (the database''s audit retention, set by `alpr db upgrade` as the schema''s owner, is 0)';
            END IF;
            RAISE EXCEPTION 'the record of plate searches is append-only';
        END $$;
        CREATE OR REPLACE FUNCTION plate_exports_kept() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        DECLARE
            kept_days DOUBLE PRECISION;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                SELECT days INTO kept_days FROM audit_retention;
                IF kept_days > 0 AND OLD.exported_at < now() - make_interval(secs => greatest(kept_days, 1) * 86400) THEN
                    RETURN OLD;
                END IF;
                IF kept_days > 0 THEN
                    RAISE EXCEPTION 'the record of exports is append-only: a record is deleted past the database''s audit retention alone (% days, set by `alpr db upgrade` as the schema''s owner), never within it: prune with ALPR_AUDIT_RETENTION_DAYS % or more', kept_days, kept_days;
                END IF;
                RAISE EXCEPTION 'the record of exports is append-only: its records are kept without limit (the database''s audit retention, set by `alpr db upgrade` as the schema''s owner, is 0)';
            END IF;
            RAISE EXCEPTION 'the record of exports is append-only';
        END $$;
        DO $$ BEGIN
            EXECUTE format('ALTER FUNCTION plate_searches_kept() SET search_path = pg_catalog, %I, pg_temp', current_schema());
            EXECUTE format('ALTER FUNCTION plate_exports_kept() SET search_path = pg_catalog, %I, pg_temp', current_schema());
        END $$;
        -- migration 25 let a record a day old be deleted: whoever held the pruner's login could erase the record
        -- of a misuse the next day, whatever ALPR_AUDIT_RETENTION_DAYS said. A delete is now let through past the
        -- audit retention alone (a day at least), read as the owner (SECURITY DEFINER: a pruner granted by the
        -- release before, a rollback's `migrate`, may not read the table, and every delete failed "permission
        -- denied"), from this schema's table, pinned here (pg_catalog first, then this schema, the session's
        -- temporary schema last, as Postgres advises for SECURITY DEFINER): neither a temporary table of the
        -- deleting session's nor one of its trigger's table's schema (TG_TABLE_SCHEMA: the pruner's own temporary
        -- table, with this trigger, read a temporary view of its own as the owner) can stand in for it
