"""Every default value in one place, each with a one-line description (as rq/defaults.py does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from common.config import DetectorBackendName, OcrEngineName, OcrModelName

DETECTOR_BACKEND: DetectorBackendName = "onnx"
"""Inference backend for the plate detector: `onnx` (ONNX Runtime), `onnx-int8` (ONNX Runtime on the model
quantised to int8 at `alpr setup`: 1.6-1.7 times as fast per core on CPU, the same plates found; README,
Performance) or `torch` (ultralytics)."""

DETECTOR_DEVICE = "cpu"
"""Device for the detector: `cpu` or `cuda:N`."""

DETECTOR_HALF = False
"""Half precision (FP16) for the `torch` backend on a CUDA device, for larger weights of your own: for the
shipped YOLOv8n it measured no faster on an H200 (likely the work around the network: not profiled), its boxes
at IoU >= 0.98 of FP32's (benchmarks/bench_detector_gpu.py; README, Performance). ONNX runs FP32 only."""

DETECTOR_IMGSZ = 960
"""Longest side, in pixels, that frames are letterboxed to before detection."""

DETECTOR_CONFIDENCE = 0.05
"""Lowest detector confidence read; low on purpose, the OCR stage decides what is a plate."""

DETECTOR_REDACT_CONFIDENCE = 0.05
"""Lowest detector confidence blurred, whatever ALPR_DETECTOR_CONFIDENCE says (it chooses what is read):
raised to 0.5 it left 4 of 120 kept frames of the demo clip with a readable plate (a review)."""

DETECTOR_MAX_PLATES_PER_FRAME = 100
"""At most this many plate boxes per frame, highest confidence first (every one is blurred: a car park
or a queue of traffic holds dozens; the 333 benchmark photos give at most 7 boxes at the low
confidence above)."""

DETECTOR_NESTED_SHARE = 0.6
"""A plate box with this share of its area inside a stronger box is blurred, not read: one plate, one read."""

DETECTOR_BATCH_SIZE = 1
"""Frames per detector inference call. On CPU, 1 measures best (benchmarks/bench_cores.py compares
batch sizes; README, Performance); on a GPU, raise it to the frames per job."""

MAX_INFERENCE_THREADS = 256
"""Most CPU threads ALPR_DETECTOR_THREADS may ask for (more than a large host's cores: the threads spin on
the cores there are). Unbounded, 100,000 made the detector start 10,000 threads, reach 16 GB resident and
ignore SIGINT, never ready (a review)."""

DETECTOR_MAX_DOWNSCALE = 2.0
"""A frame the detector would shrink more than this to fit DETECTOR_IMGSZ (a 4K frame, 4x at 960) is also
searched in overlapping tiles shrunk at most this much (detector_worker/tiles.py): on the whole frame
alone, plates under ~100 px wide fell below what the detector finds, and were neither read nor blurred.
2.0 leaves 1080p at 960 as it was (one view); 4K takes 7 (the frame and 3x2 tiles); 0: never tiled."""

OCR_ENGINE: OcrEngineName = "ppocr"
"""OCR engine: `ppocr` (PP-OCRv4 recogniser via ONNX Runtime) or `tesseract` (Tesseract C API)."""

OCR_MODEL: OcrModelName = "plate"
"""The ppocr engine's recogniser: `plate` (PP-OCRv6 small fine-tuned on plates by `alpr train-ocr`, in
ocr_worker/models), PP-OCRv4 (rapidocr-onnxruntime) or PP-OCRv6 small (rapidocr 3.10.0)."""

OCR_REGION = "us"
"""Plate-format region whose patterns guide correction: a key of common/plate_formats.yaml."""

OCR_MAX_CANDIDATES = 5
"""Candidate readings kept per plate, best first."""

OCR_CROP_MARGIN = 0.08
"""Margin added around a plate box before OCR, as a fraction of the box's width and height."""

OCR_MIN_CONFIDENCE = 0.85
"""A read is trusted at or above this calibrated probability of being exactly right (ocr_worker/
calibration.py; `alpr eval` reports coverage and wrong reads at it, README, Accuracy). Reads below it
are logged as uncertain and left out of the distinct-plates table."""

REDACT_METHOD: Literal["blur", "pixelate"] = "blur"
"""How plates are hidden in kept frames: `blur` (the box repainted from its surroundings, smoothed by a
Gaussian) or `pixelate` (the same as a mosaic); neither keeps a pixel of the plate (redactor_worker/core.py)."""

REDACT_MARGIN = 0.15
"""Margin added around a plate box before redaction, as a fraction of its width and height."""

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

ALERT_GIVE_UP_S = 86400.0
"""How long an alert's delivery is retried (a day) before it is marked failed (`alpr replay --stage alert`)."""

ALERT_BACKOFF_S = (1.0, 60.0)
"""First and longest wait between an alert's delivery attempts (doubling): a receiver back after
minutes of downtime gets its alerts within a minute."""

ALERT_MAINTENANCE_S = 1
"""How often an idle alert worker queues the deliveries that are due (retries after their back-off)."""

ALERT_REQUEUE_AFTER_S = 30.0
"""A due delivery queued this long ago and still not sent (its job lost with a worker) is queued again."""

ALERT_UNCONFIRMED_S = 3.0
"""How long after its commit a new alert's delivery waits for its raiser to say it queued the job, before
the alert pool queues it itself (a raiser killed in between)."""

ALERT_UNKNOWN_RECEIVER_GRACE_S = 900.0
"""A delivery to a receiver this worker's receivers file does not name is retried this long before it is
rejected: while the pools are restarted with a new file, a sighting worker already raising alerts to a
new receiver would have its deliveries rejected by an alert worker not restarted yet. So is a delivery a
receiver refused in a way that may be its state for a while (404, 410, 401, 403, a redirect: a maintenance
window, a deploy; alert_worker/webhook.REFUSED_FOR_NOW), counted from the alert."""

ALERT_MISSING_RECEIVER_S = ALERT_UNKNOWN_RECEIVER_GRACE_S
"""An alert raised this recently (by Postgres's clock) with no delivery to a receiver the alert worker's
file names is given one by the alert pool: a sighting worker still on an older receivers file (a rolling
restart) raised it without the receiver just added, which never got it, and `alpr replay` had no
delivery to resend. The window the pool gives such a restart the other way round; older alerts are left
(a receiver added today is not sent last week's)."""

ALERT_REFUSAL_GAP_MARGIN_S = 30.0
"""A worker's run of a receiver's refusals for now ends where none came for the longest rest (ALERT_BACKOFF_S)
plus this (a round, a lease): the grace counts from the refusal after the gap."""

ALERT_LEASE_MARGIN_S = 5.0
"""A claimed delivery's lease: the receiver's timeout plus this; past it another worker may send it."""

ALERT_HOLD_S = 600.0
"""How long a failing receiver's pending deliveries are held while one probe is tried each rest: a failed
probe holds them again, one that succeeds makes them due (ALERT_RELEASE_PER_S), whichever worker sends it
(marked in the alerts log: the probe of a worker killed or frozen is sent by another once it is due, or
once its claim's lease runs out). Held this long at most: when no probe is left to answer."""

ALERT_PENDING_COUNT_S = 10.0
"""How often an alert worker counts the deliveries pending per receiver in the alerts log, for its
`alpr_alert_deliveries_pending` (one indexed query: the pending rows alone)."""

ALERT_RELEASE_PER_S = 20.0
"""How many of a receiver's held deliveries come due a second once it answers again, the oldest first."""

ALERT_DUE_PER_RECEIVER = 100
"""Most due deliveries of one receiver the pool's round queues (of 1,000 in all): one receiver's backlog
(a day's alerts to a receiver that was down) is not queued at once ahead of every other receiver's alerts."""

ALERT_LANE_BACKLOG = 1000
"""Most alert jobs waiting for one receiver's lane in one worker (alert_worker/lanes.py), as many as one
round of the pool's `due` queues: a job past it stays pending and is queued again ALERT_REQUEUE_AFTER_S
later. Fewer would idle a fast receiver's lane for that long after a burst (a receiver back from an
outage gets its held alerts ALERT_RELEASE_PER_S a second, up to ALERT_DUE_PER_RECEIVER a round)."""

SAMPLE_FPS = 5.0
"""Frames per second sampled from each source."""

ROI_MIN_SHARE_IN_FRAME = 0.5
"""A camera's ROI of which less than this share of its area lies within its frames is warned of (once per
camera and frame size, common/roi.py): drawn for another resolution, or with x and y swapped."""

MIN_SAMPLE_FPS = 1 / 3600
"""The slowest sampling a camera may ask for, a frame an hour: 1e-300 was taken, and the camera failed
on its first frame ("timestamp out of range for platform time_t")."""


def at_least_a_frame_an_hour(fps: float) -> float:
    """`fps`, or ValueError (a validator's) when under MIN_SAMPLE_FPS."""
    if fps < MIN_SAMPLE_FPS:
        raise ValueError(f"at least one frame an hour ({MIN_SAMPLE_FPS:.6f} frames/s), not {fps:g}")
    return fps


CAPTURE_STEP_S = 0.001
"""The least time between two capture times of one camera's frames (sightings group forward in time)."""


SQLITE_PATH = "alpr_reads.sqlite"
"""Where the standalone pipeline logs reads when no database URL is set."""

STREAM_OPEN_TIMEOUT_MS = 10_000
"""How long opening a stream URL may take before it is reported unreachable."""

REDIRECT_PROBE_TIMEOUT_S = 2.0
"""How long the one request asking an http(s) camera that could not be opened whether it redirects
(ingest/redirect_probe.py) may take, all of it: connection, TLS, request and the answer's head."""

REDIRECT_PROBE_HEAD_BYTES = 8192
"""The most of that answer's status line and headers read: a Location past it is not seen (no redirect told)."""

DATASETS_DIR = "../shared/datasets"
"""Where the evaluation photographs live, relative to the working directory."""

REDIS_URL = "redis://127.0.0.1:6379/0"
"""Redis holding the job queues and the frame store."""

FRAME_TTL_S = 600
"""Seconds a raw frame may live in the frame store before Redis deletes it: long enough for the job of
a job that failed or whose worker died to run again (at least JOB_TIMEOUT_S + RECOVERY_S, checked at start)."""

MAX_FRAME_TTL_S = 86400
"""The longest ALPR_FRAME_TTL_S (a day), refused at start above it: a stored frame holds a camera's image,
plates unblurred, in Redis's memory, wanted only until its jobs have run (FRAME_TTL_S); and past what Redis
accepts (SET ... EX, about 292 million years) every frame write was refused, which the ingest node took for
Redis being down: it skipped every frame and exited 0 (a review)."""

CROP_JPEG_QUALITY = 95
"""JPEG quality of the plate crops the detector hands to the OCR pool: high, they are small."""

JPEG_QUALITY = 85
"""JPEG quality of frames in the frame store."""

MAX_FRAME_PIXELS = 7680 * 4320
"""Most pixels (width × height) a sampled frame may have: 8K UHD, beyond any camera; larger frames are skipped."""

MAX_FRAME_SIDE = 65_500
"""Most pixels a sampled frame may have across or down: a JPEG holds no more (libjpeg's limit), so a wider or
taller image can be neither stored for the chain nor written redacted by `alpr run --out` (a 70000x400
PNG ended the whole run there, the images after it unread: a review); it is skipped as too large."""

MAX_JPEG_SCANS = 100
"""Most scans (SOS markers) a JPEG may hold before it is decoded: progressive JPEGs of libjpeg, OpenCV and
Pillow have 10 (6 grey), baseline ones 1 to 3. Each scan makes the decoder pass over the whole image again:
an 8K progressive JPEG of one 20-byte scan repeated 20,000 times (595 KB) took 23 s in OpenCV and 20 s in
simplejpeg, uninterruptible, and 10 MB would take some 10 minutes (a review)."""

MAX_FRAME_BYTES = 32 * 1024 * 1024
"""Most bytes a stored frame may hold (an 8K frame at the chain's JPEG quality is a few MB): a bigger one
is skipped unread (a JPEG's header says nothing of what follows it: a job could have a worker read
gigabytes)."""

MAX_JOB_FRAME_BYTES = 256 * 1024 * 1024
"""Most stored bytes one job's frames may hold together; frames past it are skipped unread."""

MAX_JOB_DATA_BYTES = 4 * 1024 * 1024
"""Most bytes a job's data (or its exc_info) may hold, compressed or once decompressed (the largest job
the chain makes, 64 frames of 100 plates each with a 256-point region of interest, is 1.8 MB): a bigger
one, a zlib bomb among them, is refused unread. JSON parses into some 30 times its size in objects: at
32 MB, a 32 KB job of empty objects took a worker to 1 GB, kept after (a security audit)."""

MAX_FRAMES_PER_JOB = 64
"""Most frames one job may carry (the detect batch size, ALPR_FRAMES_PER_JOB, is at most this)."""

MAX_JOB_PIXELS = MAX_FRAMES_PER_JOB * 4096 * 2160
"""Most pixels one job may decode, its frames or plate crops together (a full job of 4K frames, or 17 of
8K; 1.7 GB as BGR): each frame is held to MAX_FRAME_PIXELS, but a job of many could still ask a worker
for tens of GB."""

JOB_RETRIES = 2
"""How often a failed job is queued again (common/queues.py); a job hash asking for more is held to it."""

FRAMES_PER_JOB = 16
"""Frames an ingest node puts in one detect job (one detector inference)."""

MAX_BATCH_WAIT_MS = 250
"""Longest an ingest node holds a frame while it fills a detect job: at live pace, fuller jobs (less
hand-off CPU per frame) for at most a quarter of a second of latency. The largest share of the time
from capture to a watch-list alert at live pace (benchmarks/bench_alerts.py: p99 1.18 s at 500 ms,
0.73 s at 250, 0.48 s at 100)."""

QUEUE_DEPTH_REFRESH_S = 0.5
"""How often an ingest node reads the chain's queue depths for back-pressure."""

MAX_QUEUE_DEPTH = 64
"""Jobs waiting in the chain's queues (detect + ocr + redact; each holds frames in Redis) above which
ingest nodes skip frames instead of queueing them."""

JOB_TIMEOUT_S = 120
"""Longest one job may run before RQ fails it."""

JOB_TIME_BUDGET_SHARE = 0.75
"""Share of the job timeout a detect or OCR job's frames may take: a frame not begun by then (or whose
work, at the job's pace so far, would end past it) is passed on as skipped, `over job time budget`,
and the job ends in time. A job of more work than its timeout (16 frames from an 8K camera, 7 s each
on 2 cores; 1,600 plates in one OCR job) timed out on every attempt, and none of its frames was
detected or read (a review)."""

DB_PATIENCE_S = 90
"""How long a worker waits out a Postgres outage inside one job before failing it (RQ then retries it)."""

WORKER_MAINTENANCE_S = 15
"""How often an idle worker cleans RQ's registries: the job of a worker that died is queued again
(while it has retries left) within this long of its heartbeat expiring."""

WORKER_STEADY_S = 30.0
"""An RQ worker that lost Redis sooner than this after it started is followed by the next only after a
backoff (RECONNECT_BACKOFF_S): a Redis that answers PING but refuses the worker's writes (full, or a
read-only replica) had each pool start some 1,500 workers a second, one core busy, the log flooded."""


FAILURE_TTL_S = 7 * 24 * 3600
"""How long failed jobs stay in RQ's failed registry for inspection and replay: one week."""

LEFT_JOB_TTL_S = 3600
"""How long a job left for good (refused: not the chain's, or signed with another key; rejected:
malformed) stays in RQ's failed registry: counted by `alpr replay` and its reason readable for an hour,
never replayed. Kept the week of FAILURE_TTL_S, a node with another ALPR_JOB_KEY filled Redis with them
(6.4 KB each: about 9 GB a day from a 50-camera node, a soak review)."""

RESULT_TTL_S = 60
"""How long RQ keeps a finished job's record."""

KEEP_FRAMES: Literal["plates", "all", "none"] = "plates"
"""Which redacted frames the redactor keeps: only those with a detected plate, all, or none."""

KEEP_MAX_AGE_H = 72.0
"""Hours a kept frame stays on disk; the redactor pool deletes older ones (every KEEP_SWEEP_S)."""

RETENTION_DAYS = 30.0
"""How long the plate log keeps reads, sightings and frame records (`alpr db prune`; 0: without limit).
Many cities' and states' rules on plate data set 30 days or less unless a record is evidence (an
alert's reads and sighting are kept)."""

MAX_RETENTION_DAYS = 36500.0
"""The longest retention, ALPR_RETENTION_DAYS or `alpr db prune --older-than-days` (a century)."""

MIN_RETENTION_DAYS = 1.0
"""The shortest retention but 0 (kept): a prune of the last minutes deleted reads the sighting pool had not
grouped yet (no sighting, no alert for them) and frame records still being finished."""

ALERT_RETENTION_DAYS = 365.0
"""How long `alpr db prune` keeps a watch-list alert (its deliveries, and through it the evidence it cites:
its frame's record, the read alerted on, its sighting) after its capture (0: without limit); one whose
delivery is still pending or being sent is kept until it ends. Unset where the plate data is kept without
limit (ALPR_RETENTION_DAYS 0), the alerts are too (Settings.alert_days)."""

AUDIT_RETENTION_DAYS = 730.0
"""How long `alpr db prune` keeps the audit records of plate searches and exports (0: without limit): at
least as long as the plate data searched (ALPR_RETENTION_DAYS), for misuse of a search is found by them;
unset, the plate data's retention where that is longer (Settings.audit_days)."""

KEEP_SWEEP_S = 600
"""How often a redactor worker deletes kept frames older than the age limit."""

MAX_FRAME_AGE_S = 30.0
"""Longest a frame may take from capture to logged: under overload, frames that would be older are
skipped (counted, recorded) rather than processed minutes late, so the processed ones stay fresh."""

MAX_RESUMED_FOOTAGE_S = 86400.0
"""The longest recorded footage (by its stated frame count) a restarted ingest node resumes where its
frames ended; a longer one is read again whole (its reads are logged once all the same)."""

RECORDED_QUEUE_SHARE = 0.25
"""Share of ALPR_MAX_QUEUE_DEPTH that recorded footage (`realtime: false`) fills before it waits for the
chain: its frames are never shed as too old, so only their TTL in the frame store bounds their wait,
and a full queue of 64 jobs (1,024 frames) took minutes to work through at a few frames a second."""

MAX_AGE_QUEUED_SHARE = 0.8
"""Share of MAX_FRAME_AGE_S a frame may spend before its detection starts; the rest is left for
detection, reading, redaction and the writes (a frame older than this at detection is skipped)."""

JOB_LEASE_S = 15
"""A running job's lease in RQ's started registry, renewed every JOB_LEASE_S / 3 by the worker's
heartbeat thread: a killed worker's job is found abandoned this long after its last renewal."""

METRICS_ADDRESS = "127.0.0.1"
"""Address the metrics server binds to: this host only unless set (0.0.0.0 for a scraper elsewhere)."""

METRICS_SOCKET_TIMEOUT_S = 10.0
"""How long the metrics server serves a connection from its accept, its request and answer together: one
still unanswered is closed then (a scrape sends its request at once; prometheus_client's server waited for
ever, a thread held each time; a per-read timeout let one byte every 9 s hold a slot for ever)."""

METRICS_MAX_REQUEST_BYTES = 8192
"""The most of a request the metrics server reads (its line and headers): a longer one is closed unanswered."""

METRICS_MAX_CONNECTIONS = 16
"""Connections the metrics server serves at once, a thread each (Prometheus and the healthcheck need one
each); one more is closed at once."""

DB_OUTAGE_BACKOFF_S = (0.5, 5.0)
"""First and longest wait between attempts while Postgres is unreachable inside a job."""

DB_ATTEMPT_S = 2.0
"""Longest wait for a pooled Postgres connection in one attempt (a healthy pool answers at once)."""

DB_CHECK_S = 5.0
"""While a process's `alpr_database_up` says 0 (a statement met an outage: common/db_watch.py), how long it waits
for one of its own statements to say whether Postgres is back before it asks itself (SELECT): a worker idle
since the outage said 0 until its next job."""

DB_CONNECT_TIMEOUT_S = 5
"""libpq's connect_timeout for every Postgres connection, unless the URL or PGCONNECT_TIMEOUT gives one: a
port where no Postgres answers (Redis's) was waited on for ever (libpq has no default)."""

DB_OPEN_WAIT_S = 10.0
"""Longest wait for a new Postgres pool's first connection (a server starting up) before a role or command
says it cannot connect; a login refused for good is told at once."""

DB_LOCK_TIMEOUT_S = 10.0
"""Longest a pooled session's statement waits for a lock (Postgres's `lock_timeout`) before it is cancelled
(LockNotAvailable) and the write is tried again as through an outage, the log naming the lock: a table an
operator locked (`LOCK TABLE frames`) held the OCR and redaction jobs silently until RQ's job timeout."""

STATUS_STATEMENT_TIMEOUT_S = 5.0
"""Longest any statement of `alpr status`'s frames-log part may run (Postgres's `statement_timeout`): behind
a lock it hung until killed."""

RECONNECT_BACKOFF_S = (1.0, 30.0)
"""First and longest wait before an ingest node reopens a dropped source."""

FOOTAGE_STALLED_PASSES = 3
"""Passes in a row of footage (a file, a video served over http://) cut short without getting further than
the one before (its reader killed at the same frame, a connection dropping at the same byte) after which an
ingest node gives the camera up as failed: each pass resumes where the last stopped, with backoff; read
again from its start as new footage, a transfer that always dropped halfway was queued for ever (a review)."""

CREDENTIALS_RETRY_S = 300.0
"""How long an ingest node (or `alpr run`) waits before it opens again a camera that refused its
credentials (HTTP or RTSP 401/403): tried at the reconnect backoff, a wrong password logged in again
every 30 s, 120 times an hour, enough for a camera to lock the account (a review)."""

STORE_FULL_RETRY_S = (0.5, 10.0)
"""First and longest wait before an ingest node tries again to store recorded footage's batch that the
full frame store refused (its maxmemory): footage waits for room, never skipped."""

FRAME_STORE_RESERVE_SHARE = 0.05
"""Share of the frame store's maxmemory an ingest node leaves free (its frames stop short of it): room kept for
the detectors' plate crops (JPEG q95, a few tens of kB each: far smaller than the frames), without which the
detect jobs, then the redaction that frees the frames, stalled until the frames expired (a review: 0 of 77
frames processed). Nothing of the kind where the store has no maxmemory (0)."""

FRAME_STORE_RESERVE_MIN_BYTES = 32 * 1024 * 1024
"""Least room an ingest node leaves free in the frame store (FRAME_STORE_RESERVE_SHARE's floor), and at most
half its maxmemory: the crops of some 1,000 plates. Each node counts only its own writes between two reads, so
several nodes near the line together store up to a batch each past it before one reads again (a diff review: 20
nodes each storing 16 frames of 150 kB a read left 1.4 MiB of a 32 MiB reserve): with many ingest nodes on one
store, raise its maxmemory so the share exceeds nodes × a batch's bytes."""

REDIS_TIMEOUT_S = 30.0
"""How long a Redis command may wait for its answer (a worker's dequeue blocks for less)."""

REDIS_OPEN_PROBE_TIMEOUT_S = 2.0
"""How long a role's start waits on the one connection without credentials by which it asks whether its
Redis needs a password at all (common/redis_open.py)."""

INGEST_REDIS_TIMEOUT_S = 10.0
"""The same for an ingest node, which never blocks on Redis: a stop while Redis stalled (no answer, a
full disk or a paused server) waited 30 s on the batch being stored before recording the frames in
hand, past a supervisor's grace (Docker's 10 s unless told; the compose file gives ingest 60 s)."""

QUEUE_DEPTH_TIMEOUT_S = 1.0
"""How long a scrape waits on Redis for the queue depths (common/metrics.py), connecting and reading each: a
hung Redis (paused, or a partition dropping its packets) held every role's scrape for the role's own Redis
timeout (30 s a worker, 10 s an ingest node), past Prometheus's scrape_timeout (deploy/prometheus.yml), so
every process read as down and alpr_redis_up was never scraped as 0 (a review)."""

CAMERA_STOP_S = 5.0
"""How long a stopping ingest node waits for all its camera threads together (one stuck in a read is
left behind) before it records the frames in hand: well within a supervisor's grace (Docker's 10 s)."""

CAMERA_CLAIM_TTL_S = 30
"""How long an ingest node's claim on a camera outlives its last renewal: a node that died holds its
cameras this long at most (ingest/claims.py)."""

CAMERA_CLAIM_RENEW_S = 10.0
"""How often a running ingest node renews its claims on its cameras."""

STABLE_STREAM_S = 30.0
"""A stream connected this long before it dropped or ended starts its reconnection backoff afresh; one
that drops sooner keeps backing off (a camera closing every connection is not reopened flat out)."""

TARGET_BUSY = 0.8
"""Share of its workers' time a pool should be busy at the current input: `alpr status` sizes pools
to it, leaving room for bursts."""

RECOVERY_S = JOB_LEASE_S + 2 * WORKER_MAINTENANCE_S + 30
"""Longest time from a worker's death to its job running again (lease, registry cleaning, an idle
worker's wake-up) plus a margin: frames must outlive JOB_TIMEOUT_S + this, which config checks."""

LEDGER_CAPACITY = 200_000
"""Frame records an ingest node holds while the frames log (Postgres) is unreachable: about 40 MB.
Past it, frames are counted as unrecorded (alpr_frames_unrecorded_total)."""

LEDGER_CLOSE_S = 15.0
"""How long a stopping ingest node tries to write the frame records it still holds."""

LEDGER_BATCH_ROWS = 1000
"""Frame records an ingest node's ledger writes per statement batch."""

LEDGER_FLUSH_S = 0.5
"""How often an ingest node's ledger writes what it holds."""

LEDGER_IDLE_WATERMARK_S = 2.0
"""How often an ingest node's ledger renews the watermarks of cameras with nothing to write."""

LEDGER_SPOOL_AFTER_S = 5.0
"""A ledger's write unanswered this long has what the ledger holds spooled (as a failed write has), in
case the node is killed before Postgres answers."""

LEDGER_FINISHED_RETRY_S = 30.0
"""After the frames log could not say which frames are finished, how long a ledger does not ask again."""

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

CAPTURE_MEMORY_MB = 1024
"""Most resident memory (MB) one video's or camera's capture may hold (ingest/capture_process.py): FFmpeg
bounds neither a stream part's declared length nor a mid-stream frame's size. A 4K stream's decoding
takes a few hundred MB; past this its reader is stopped and the camera reconnects."""

CAPTURE_WAIT_S = 60.0
"""Longest a capture's call (open, next frame) may go unanswered, FFmpeg's own timeouts (10 s) being past,
before its reader is stopped as hung."""

REPEATED_LOG_INTERVAL_S = 60.0
"""An event that may repeat for every job (a job refused for its signature, an RQ command refused) is
logged at once, then at most this often, with the count since (`common.log_throttle`)."""

CAPTURE_DECODER_THREADS = 2
"""Threads each video's or camera's decoder runs (OpenCV's default: one a core). Memory grows with them:
an 8K H.264 stream took 532 MB with 2 and past 1 GB with 8, a 4K one 215 MB with 2 and 923 MB with 32; two
decode a 4K camera in real time, and the detector, not decoding, sets a node's pace."""


UNROUTED_LOG_INTERVAL_S = 600.0
"""How often the sighting pool says again that a watch-list's alerts go to no receiver (common/alerts.routed)."""
