
        CREATE INDEX alerts_by_created ON alerts (created_at);
        -- the alert pool's round finds the alerts raised lately (common/alert_log.py's ADD_MISSING) without
        -- reading the whole log every second
        