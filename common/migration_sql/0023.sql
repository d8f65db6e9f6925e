
        ALTER TABLE frames ADD COLUMN frame_ref JSONB;
        -- a pending frame's reference as its detect job carried it (common/jobs.py's FrameRef: its store key,
        -- region, ROI, source time, digest), written with the ingest node's pending row and cleared when
        -- the frame ends: `alpr replay --orphans` (common/orphan_replay.py) queues a frame no job holds again
        -- from it while its bytes live (the row lacked them: such frames waited for the sweep's `lost`).
        -- Nullable, no default: no rewrite of the table under its lock; rows of earlier releases have none
        