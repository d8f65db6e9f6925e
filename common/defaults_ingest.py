"""Defaults of the ingest nodes: sampling, opening and reopening sources, batching frames into detect
jobs and back-pressure, the frame store's reserve, camera claims, the frame-record ledger, capture
processes' bounds.
Read them as `defaults.NAME` (common/defaults.py), not from this module."""

from __future__ import annotations

SAMPLE_FPS = 5.0
"""Frames per second sampled from each source."""

ROI_MIN_SHARE_IN_FRAME = 0.5
"""A camera's ROI of which less than this share of its area lies within its frames is warned of (once per
camera and frame size, common/roi.py): drawn for another resolution, or with x and y swapped."""

MIN_SAMPLE_FPS = 1 / 3600
"""The slowest sampling a camera may ask for, a frame an hour: 1e-300 was taken, and the camera failed
on its first frame ("timestamp out of range for platform time_t")."""


CAPTURE_STEP_S = 0.001
"""The least time between two capture times of one camera's frames (sightings group forward in time)."""

STREAM_OPEN_TIMEOUT_MS = 10_000
"""How long opening a stream URL may take before it is reported unreachable."""

REDIRECT_PROBE_TIMEOUT_S = 2.0
"""How long the one request asking an http(s) camera that could not be opened whether it redirects
(ingest/redirect_probe.py) may take, all of it: connection, TLS, request and the answer's head."""

REDIRECT_PROBE_HEAD_BYTES = 8192
"""The most of that answer's status line and headers read: a Location past it is not seen (no redirect told)."""

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

MAX_RESUMED_FOOTAGE_S = 86400.0
"""The longest recorded footage (by its stated frame count) a restarted ingest node resumes where its
frames ended; a longer one is read again whole (its reads are logged once all the same)."""

RECORDED_QUEUE_SHARE = 0.25
"""Share of ALPR_MAX_QUEUE_DEPTH that recorded footage (`realtime: false`) fills before it waits for the
chain: its frames are never shed as too old, so only their TTL in the frame store bounds their wait,
and a full queue of 64 jobs (1,024 frames) took minutes to work through at a few frames a second."""

RECONNECT_BACKOFF_S = (1.0, 30.0)
"""First and longest wait before an ingest node reopens a dropped source."""

RECONNECT_JITTER = 0.5
"""The most of each reconnect wait (RECONNECT_BACKOFF_S) an ingest node's camera cuts off at random: each wait
is from half of it to all of it; the wait after refused credentials (CREDENTIALS_RETRY_S) is lengthened by as
much instead (from all of it to 1.5 times it: never shorter, it guards against an account's lockout). Exact,
10 cameras behind one dead recorder all reconnected within the same second at 2.5, 6.5, 10.5, 16.5, 25.5 s,
each attempt a child process (a review)."""

CAMERA_START_SPREAD_S = 0.25
"""Per camera of an ingest node, how far (seconds) the first opens of its cameras are spread at start (each
camera's after a random wait up to this times the node's cameras less one): not all at the same instant."""

CAMERA_START_SPREAD_MAX_S = 5.0
"""The longest random wait before a camera's first open (CAMERA_START_SPREAD_S), however many cameras."""

FOOTAGE_STALLED_PASSES = 3
"""Passes in a row of footage (a file, a video served over http://) cut short without getting further than
the one before (its reader killed at the same frame, a connection dropping at the same byte) after which an
ingest node gives the camera up as failed: each pass resumes where the last stopped, with backoff; read
again from its start as new footage, a transfer that always dropped halfway was queued for ever (a review)."""

CREDENTIALS_RETRY_S = 300.0
"""How long at least an ingest node (or `alpr run`) waits before it opens again a camera that refused its
credentials (HTTP or RTSP 401/403; a node's cameras up to RECONNECT_JITTER longer, at random): tried at the
reconnect backoff, a wrong password logged in again every 30 s, 120 times an hour, enough for a camera to
lock the account (a review)."""

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

INGEST_REDIS_TIMEOUT_S = 10.0
"""The same for an ingest node, which never blocks on Redis: a stop while Redis stalled (no answer, a
full disk or a paused server) waited 30 s on the batch being stored before recording the frames in
hand, past a supervisor's grace (Docker's 10 s unless told; the compose file gives ingest 60 s)."""

CAMERA_STOP_S = 5.0
"""How long a stopping ingest node waits for all its camera threads together (one stuck in a read is
left behind) before it records the frames in hand: well within a supervisor's grace (Docker's 10 s)."""

CAMERA_CLAIM_TTL_S = 30
"""How long an ingest node's claim on a camera outlives its last renewal: a node that died holds its
cameras this long at most (ingest/claims.py)."""

CAMERA_CLAIM_RENEW_S = 10.0
"""How often a running ingest node renews its claims on its cameras."""

REOPEN_INTERVAL_S = 1.0
"""The soonest a camera that closed its connection after serving its frames (a snapshot URL's one JPEG) is opened
again after its last open, however high its sample_fps: each open starts a capture process (about 0.3 s of CPU),
and at 5 frames/s one snapshot camera took 1.4 cores (a review)."""

STABLE_STREAM_S = 30.0
"""A stream connected this long before it dropped or ended starts its reconnection backoff afresh; one
that drops sooner keeps backing off (a camera closing every connection is not reopened flat out)."""

CAMERA_SILENT_S = 600.0
"""How long a camera an ingest node holds may sample nothing before it reads silent (alpr_camera_silent,
ingest/camera_silence.py), or CAMERA_SILENT_INTERVALS of its sample intervals where those are longer (a camera
sampled once in 15 minutes is not silent)."""

CAMERA_SILENT_INTERVALS = 3
"""The sample intervals a camera may sample nothing before it reads silent, where CAMERA_SILENT_S is shorter."""

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

MAX_PENDING_FRAME_BYTES = 256 * 1024 * 1024
"""Most JPEG bytes an ingest node's frames handed on but not packed yet may hold together (as many as one
job's frames: MAX_JOB_FRAME_BYTES), beside their count (4 jobs' worth): a live camera's frame finding no room
is skipped (node_busy), footage's waits. By count alone, 64 frames of an 8K noise camera held 1.5 GB."""

CAPTURE_MEMORY_MB = 1024
"""Most resident memory (MB) one video's or camera's capture may hold (ingest/capture_process.py): FFmpeg
bounds neither a stream part's declared length nor a mid-stream frame's size. A 4K stream's decoding
takes a few hundred MB; past this its reader is stopped and the camera reconnects."""

CAPTURE_WAIT_S = 60.0
"""Longest a capture's call (open, next frame) may go unanswered, FFmpeg's own timeouts (10 s) being past,
before its reader is stopped as hung."""

CAPTURE_DECODER_THREADS = 2
"""Threads each video's or camera's decoder runs (OpenCV's default: one a core). Memory grows with them:
an 8K H.264 stream took 532 MB with 2 and past 1 GB with 8, a 4K one 215 MB with 2 and 923 MB with 32; two
decode a 4K camera in real time, and the detector, not decoding, sets a node's pace."""
