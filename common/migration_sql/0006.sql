
        CREATE TABLE watchlist (
            list_name TEXT NOT NULL DEFAULT 'default' CONSTRAINT watchlist_list_name_valid
                CHECK (list_name ~ '^[A-Za-z0-9_.-]{1,64}$'),
            plate TEXT NOT NULL CONSTRAINT watchlist_plate_normalised CHECK (plate ~ '^[A-Z0-9]{1,16}$'),
            reason TEXT NOT NULL CONSTRAINT watchlist_reason_length CHECK (length(reason) BETWEEN 1 AND 200),
            expires_at TIMESTAMPTZ,
            added_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (list_name, plate)
        );
        