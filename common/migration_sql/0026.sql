
        CREATE TABLE audit_retention (
            only_row BOOLEAN PRIMARY KEY DEFAULT true CONSTRAINT audit_retention_one_row CHECK (only_row),
            days DOUBLE PRECISION NOT NULL CONSTRAINT audit_retention_days_known CHECK (days = 0 OR days >= 1),
            set_at TIMESTAMPTZ
        );
        INSERT INTO audit_retention (days) VALUES (0);
        -- how long the records of plate searches and exports are kept, whoever asks: written by `alpr db upgrade`
        -- (as the owner) from its settings, ALPR_AUDIT_RETENTION_DAYS or its default rule (common/audit_policy.py),
        -- 0 (kept without limit: no record deleted) until it is (set_at NULL: never set); read by the pruner, changed by the owner alone
        CREATE OR REPLACE FUNCTION plate_searches_kept() RETURNS trigger LANGUAGE plpgsql
            SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            kept_days DOUBLE PRECISION;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                EXECUTE format('SELECT days FROM %I.audit_retention', TG_TABLE_SCHEMA) INTO kept_days;
                IF kept_days > 0 AND OLD.searched_at < now() - make_interval(secs => greatest(kept_days, 1) * 86400) THEN
                    RETURN OLD;
                END IF;
                IF kept_days > 0 THEN
                    RAISE EXCEPTION 'the record of plate searches is append-only: a record is deleted past the audit retention alone (% days, set by alpr db upgrade), never within it', kept_days;
                END IF;
                RAISE EXCEPTION 'the record of plate searches is append-only: its records are kept without limit (the audit retention set by alpr db upgrade is 0)';
            END IF;
            RAISE EXCEPTION 'the record of plate searches is append-only';
        END $$;
        CREATE OR REPLACE FUNCTION plate_exports_kept() RETURNS trigger LANGUAGE plpgsql
            SET search_path = pg_catalog, pg_temp AS $$
        DECLARE
            kept_days DOUBLE PRECISION;
        BEGIN
            IF TG_OP = 'DELETE' THEN
                EXECUTE format('SELECT days FROM %I.audit_retention', TG_TABLE_SCHEMA) INTO kept_days;
                IF kept_days > 0 AND OLD.exported_at < now() - make_interval(secs => greatest(kept_days, 1) * 86400) THEN
                    RETURN OLD;
                END IF;
                IF kept_days > 0 THEN
                    RAISE EXCEPTION 'the record of exports is append-only: a record is deleted past the audit retention alone (% days, set by alpr db upgrade), never within it', kept_days;
                END IF;
                RAISE EXCEPTION 'the record of exports is append-only: its records are kept without limit (the audit retention set by alpr db upgrade is 0)';
            END IF;
            RAISE EXCEPTION 'the record of exports is append-only';
        END $$;
        -- migration 25 let a record a day old be deleted: whoever held the pruner's login could erase the record
        -- of a misuse the next day, whatever ALPR_AUDIT_RETENTION_DAYS said. A delete is now let through past the
        -- audit retention alone (a day at least), read from this schema's table by name (TG_TABLE_SCHEMA: a
        -- temporary table of the deleting session's, first on its search path, cannot stand in for it), Postgres's
        -- own functions and operators first (pg_catalog)
