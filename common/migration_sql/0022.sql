
        ALTER TABLE alert_deliveries ADD COLUMN unrefused_attempt_at TIMESTAMPTZ;
        -- when an attempt of the delivery last ended otherwise than refused for now (common/alert_holds.py's
        -- UNREFUSED): a receiver's backlog is rejected for its refusals only where none did in the grace
        -- (REJECT_REFUSED). Nullable, no default: no rewrite of the table under its lock
        