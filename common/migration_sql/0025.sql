
        CREATE OR REPLACE FUNCTION plate_searches_kept() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                IF OLD.searched_at < now() - interval '1 day' THEN
                    RETURN OLD;
                END IF;
                RAISE EXCEPTION 'the record of plate searches is append-only: a record is deleted past its retention alone (alpr db prune), never within a day';
            END IF;
            RAISE EXCEPTION 'the record of plate searches is append-only';
        END $$;
        CREATE OR REPLACE FUNCTION plate_exports_kept() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                IF OLD.exported_at < now() - interval '1 day' THEN
                    RETURN OLD;
                END IF;
                RAISE EXCEPTION 'the record of exports is append-only: a record is deleted past its retention alone (alpr db prune), never within a day';
            END IF;
            RAISE EXCEPTION 'the record of exports is append-only';
        END $$;
        -- the audit records are pruned past ALPR_AUDIT_RETENTION_DAYS (alpr db prune, as the pruner's role:
        -- DELETE granted, migration 12's and 13's triggers refused every delete, the owner's too, so a city's
        -- retention policy could be met by SQL by hand alone). Still never updated or emptied, and no record
        -- younger than a day is deleted (the shortest retention a setting allows): a login that may prune
        -- cannot erase the record of the search it just made
