
        CREATE INDEX sightings_by_first_seen ON sightings (first_seen, sighting_id);
        CREATE INDEX sightings_by_last_seen ON sightings (last_seen);
        -- the sightings export streams in first-seen order from its first row (it sorted every sighting
        -- first: 1.58 million, 14.9 s to the first row, a scale review), and a search over a window with no
        -- camera finds the sightings that end within it (`alpr search --since` a last hour read every
        -- sighting: there was no index on time alone)
        