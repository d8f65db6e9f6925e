
        CREATE TABLE sightings (
            sighting_id TEXT PRIMARY KEY,
            camera_id TEXT NOT NULL,
            plate TEXT NOT NULL,
            confidence REAL NOT NULL,
            first_seen TIMESTAMPTZ NOT NULL,
            last_seen TIMESTAMPTZ NOT NULL,
            reads INTEGER NOT NULL,
            best_frame_id TEXT NOT NULL,
            best_confidence REAL NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
            texts JSONB NOT NULL,
            snapshot_path TEXT,
            closed_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX sightings_by_plate ON sightings (plate);
        CREATE INDEX sightings_by_camera_time ON sightings (camera_id, first_seen);
        CREATE INDEX plate_reads_by_camera_id ON plate_reads (camera_id, id);
        CREATE INDEX frames_unsettled ON frames (camera_id, captured_at)
            WHERE outcome = 'pending' OR read_outcome = 'pending';
        CREATE TABLE camera_watermarks (
            camera_id TEXT PRIMARY KEY,
            recorded_until_s DOUBLE PRECISION NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE sighting_cursors (
            camera_id TEXT PRIMARY KEY,
            grouped_until_s DOUBLE PRECISION NOT NULL DEFAULT 0,
            early_read_id BIGINT NOT NULL DEFAULT 0,
            state JSONB NOT NULL DEFAULT '{}',
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE alerts (
            alert_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CONSTRAINT alerts_kind_known CHECK (kind IN ('read', 'sighting')),
            camera_id TEXT NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            body JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE alert_deliveries (
            alert_id TEXT NOT NULL REFERENCES alerts ON DELETE CASCADE,
            receiver TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CONSTRAINT alert_deliveries_status_known
                CHECK (status IN ('pending', 'sending', 'delivered', 'failed', 'rejected')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            queued_at TIMESTAMPTZ,
            retry_from TIMESTAMPTZ NOT NULL DEFAULT now(),
            last_error TEXT,
            delivered_at TIMESTAMPTZ,
            PRIMARY KEY (alert_id, receiver)
        );
        CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
        