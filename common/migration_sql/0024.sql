
        CREATE FUNCTION frame_ref_dropped() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.frame_ref := NULL;
            RETURN NEW;
        END $$;
        CREATE TRIGGER frame_ref_dropped BEFORE UPDATE OF outcome ON frames FOR EACH ROW
            WHEN (NEW.outcome <> 'pending' AND NEW.frame_ref IS NOT NULL) EXECUTE FUNCTION frame_ref_dropped();
        -- a frame's reference (migration 23) dropped by Postgres in the update that ends the frame (a stage's
        -- final record, the sweep's `lost`, a release before's too), in the same row version: the workers
        -- set it NULL themselves, which needed a grant of UPDATE (frame_ref) that a rolled-back release's
        -- `alpr db upgrade --grant` revoked (every final record and sweep of the newer redactors still running
        -- refused). Left until the prune, 300 bytes to 5 KB a row (a camera's ROI) at 9 million rows an hour
        -- doubled the frames log or more; cleared by a later owner's UPDATE, every row written twice
        