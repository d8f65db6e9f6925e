
        CREATE INDEX alerts_by_sighting ON alerts ((body ->> 'sighting_id'));
        -- alpr db prune keeps the very sighting an alert names (common/retention.py), not every sighting
        -- at its camera spanning its capture: the car in the next lane, the car parked in view
        