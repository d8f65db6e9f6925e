"""Defaults of the sighting pool: how reads are grouped into sightings (gaps, settling, open and late
tracks, its Postgres session's limits) and matched against the watch-lists (distances, fuzzy matches,
the early match's confidence, repeats).
Read them as `defaults.NAME` (common/defaults.py), not from this module."""

from __future__ import annotations

SIGHTING_GAP_S = 2.0
"""Seconds a camera may go without reading a plate before its sighting (the vehicle's pass) is closed."""

SIGHTING_POLL_S = 0.2
"""How often a sighting worker looks for new reads (early watch-list matches wait at most this long)."""

SIGHTING_SETTLE_S = 2.0
"""A camera's reads are grouped up to this long before now at the latest: the ingest node records a
frame in the frames log a moment after queuing it, and grouping must not pass a frame not yet there."""

OPEN_TRACK_DWELL_S = 10.0
"""A track still open (its car in view) is matched against the watch-lists once its reads span this long (a car
parked or queued; a passing car crosses a view in ~2 s and is judged at its sighting's close): a running vote
of a few reads, one misread at 0.86 alone, alerted on a passing car its closed sighting contradicts (a review)."""

OPEN_TRACK_MIN_READS = 3
"""An open track's vote is matched only when at least this many of its reads read the voted plate exactly."""

EARLY_RESCAN_S = 30.0
"""Reads logged this recently are matched against the watch-lists again each round (a read's id is taken
at insert, and commits land in any order); alert ids and passes make a second match harmless."""

LATE_SIGHTING_HOLD_S = 30.0
"""A track of reads logged late (captured behind its camera's cursor: a spool replayed) is held open until no
late read has joined it for this long (Postgres's clock), then closed: its sighting logged and matched
(sighting_worker/late_tracks.py). A replay logs a car's reads over several rounds, in batches; each round's
share was a sighting of its own. Its early alerts are not held; its sighting, an hour late already, is."""

FRAME_INTERVAL_UNKNOWN_S = 2.0
"""How often a sighting worker looks up a camera's frame interval while it is unknown (under two frames logged)."""

SIGHTING_HEARTBEAT_TTL_S = 30
"""A sighting worker counts as alive this long after its last heartbeat (renewed every third of it)."""

SIGHTING_BATCH_READS = 5000
"""Most reads a sighting worker groups for one camera in one transaction (a backlog goes in steps)."""

SIGHTING_IDLE_IN_TRANSACTION_S = 5.0
"""How long a sighting worker's session may sit idle in a transaction before Postgres ends it (a frozen holder)."""

SIGHTING_STATEMENT_TIMEOUT_S = 5.0
"""Longest statement of a camera's transaction (the one holding its cursor); longer, Postgres cancels it."""

SIGHTING_ALIVE_EVERY_S = 1.0
"""How often a camera's transaction busy in Python (a backlog, a long list) sends Postgres a statement."""

SIGHTING_TCP_USER_TIMEOUT_S = 10.0
"""How long Postgres lets data it sent a sighting worker go unacknowledged before dropping the connection."""

WATCH_MAX_DISTANCE = 1.0
"""Largest plate distance (common/plate_text.py; a look-alike swap costs 0.5) of a watch-list match."""

WATCH_FUZZY_MIN_CHARS = 5
"""Listed plates shorter than this match within one look-alike swap at most (O/0), whatever the largest
distance: within a whole edit, a listed A1 matched 72 of the 1,295 other two-character plates (a
review), K9X 105 of its length; KPX4721 matches 245 of 78 billion."""

WATCH_FUZZY_MIN_PROBABILITY = 0.001
"""A fuzzy watch-list match (a listed plate within ALPR_WATCH_MAX_DISTANCE of the plate read, not equal to it)
alerts only when the recogniser itself gave the listed text at least this probability: among a read's own
candidates (plate_reads.candidates, its top texts), a sighting's averaged over its reads
(sighting_worker/match_evidence.py). Matched on distance alone, a listed plate one edit or a look-alike swap
from a passing car alerted on nearly every pass where that car was read right: 1,756 fuzzy alerts on real
photos with near-miss lists for one rescued misread (precision 20%), and a 100,000-entry random hot-list
alerted on 4.2% of correctly read us cars (an alert review). At 0.001: 117 of those alerts left, the rescue
(RKO26AJ read RK026AJ, RKO26AJ its candidate at 0.0091) kept. 0: distance alone, as before."""

ALERT_CANDIDATES = 3
"""How many of the read's (a sighting's: its reads') candidate texts an alert's body carries, best first."""

WATCH_READ_MIN_CONFIDENCE = 0.9
"""Reads at or above this confidence are matched against the watch-lists at once; others via their sighting.
Where ALPR_WATCH_READ_MIN_CONFIDENCE is unset, ALPR_OCR_MIN_CONFIDENCE when that is higher
(Settings.early_match_min_confidence)."""

ALERT_REPEAT_S = 60.0
"""A listed plate seen again at a camera within this many seconds of its last read there belongs to the
pass already alerted on: a parked car that traffic hides now and then, a car queued at lights, raise one
alert, not one each time the plate comes back into view for longer than the sighting gap."""

WATCH_REFRESH_S = 5.0
"""How often a worker reloads the watch-lists from Postgres (it matches every read against its cached copy)."""

UNROUTED_LOG_INTERVAL_S = 600.0
"""How often the sighting pool says again that a watch-list's alerts go to no receiver (common/alerts.routed)."""
