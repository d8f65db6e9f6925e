"""Defaults bounding what the chain holds and decodes: a stored frame's lifetime and JPEG quality, the
largest frame, JPEG, job and job data accepted.
Read them as `defaults.NAME` (common/defaults.py), not from this module."""

from __future__ import annotations

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
gigabytes). An ingest node stores none bigger: such a frame is skipped there (too_large)."""

MAX_JOB_FRAME_BYTES = 256 * 1024 * 1024
"""Most stored bytes one job's frames may hold together; frames past it are skipped unread. An ingest node
closes a job before its frames pass it (ingest/job_packer.py)."""

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
