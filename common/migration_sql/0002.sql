
        ALTER TABLE frames ADD COLUMN outcome TEXT NOT NULL DEFAULT 'done';
        CREATE INDEX frames_not_done ON frames (camera_id, captured_at) WHERE outcome <> 'done';
        