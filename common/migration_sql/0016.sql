
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
        