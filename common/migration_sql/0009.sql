
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
        