
        DO $$ BEGIN
            EXECUTE format('ALTER FUNCTION watchlist_changed() SET search_path = %I, pg_temp', current_schema());
        END $$;
        -- the owner's function ran with the schema's search_path, which put the caller's temporary
        -- schema first: a worker role could plant a temporary watchlist_version with a trigger of its
        -- own and run any SQL as the tables' owner (a superuser in Compose); pg_temp last, as Postgres
        -- advises for SECURITY DEFINER functions
        