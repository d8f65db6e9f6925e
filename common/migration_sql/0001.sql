
        CREATE TABLE cameras (
            camera_id TEXT PRIMARY KEY,
            region TEXT NOT NULL,
            enabled BOOLEAN NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE frames (
            frame_id TEXT PRIMARY KEY,
            camera_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            frame_index BIGINT NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            plates INTEGER NOT NULL,
            stage_ms JSONB NOT NULL,
            kept_path TEXT,
            done_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX frames_by_camera_time ON frames (camera_id, captured_at);
        CREATE TABLE plate_reads (
            id BIGSERIAL PRIMARY KEY,
            camera_id TEXT NOT NULL,
            frame_id TEXT NOT NULL,
            frame_index BIGINT NOT NULL,
            frame_time_s DOUBLE PRECISION NOT NULL,
            captured_at TIMESTAMPTZ NOT NULL,
            plate_index INTEGER NOT NULL,
            plate_text TEXT NOT NULL,
            confidence REAL NOT NULL,
            format_name TEXT,
            format_match BOOLEAN NOT NULL,
            candidates JSONB NOT NULL,
            x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
            detection_confidence REAL NOT NULL,
            stage_ms JSONB NOT NULL,
            logged_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (frame_id, plate_index)
        );
        CREATE INDEX plate_reads_by_plate ON plate_reads (plate_text);
        CREATE INDEX plate_reads_by_camera_time ON plate_reads (camera_id, captured_at);
        