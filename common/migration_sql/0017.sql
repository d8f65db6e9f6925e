
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
        