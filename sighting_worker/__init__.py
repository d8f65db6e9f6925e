"""Sighting role: the sighting pool groups one camera's plate reads, frame after frame, into sightings
(one event per vehicle pass in front of that camera: `SightingTracker`, grouping.py), votes each
sighting's plate from its reads (`vote`, voting.py) and matches the voted plates against watch-lists.
core.py is the pure core's one import point (no Redis, no Postgres, no I/O)."""
