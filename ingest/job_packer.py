"""Packing an ingest node's sampled frames into detect jobs, and the node's view of the chain's Redis.
The camera threads put their frames (JPEG bytes and reference) among the frames to pack; `pack_jobs`
gathers them into jobs — full at `frames_per_job` or at MAX_JOB_FRAME_BYTES of JPEG, or when the oldest
has waited `max_batch_wait_ms` — and `flush` stores each job's frames in the frame store with a TTL and
queues its frame references on the detect queue, waiting out a Redis outage (the cameras skip meanwhile,
by `redis_down`). A batch the full frame store refuses (its maxmemory), or that would take the store
within the reserve kept for the detectors' plate crops (`room`, ingest/store_room.py), is skipped as
back-pressure, but for its recorded footage's frames (`realtime: false`), which are held and tried again
with backoff (`held`; footage cameras wait meanwhile) until the store has room: footage waits, never
skipped. Every QUEUE_DEPTH_REFRESH_S it reads the frame store's memory and how many jobs the chain's
queues hold (`depth`, by which the cameras skip or wait), reports the frames skipped and unrecorded
since (for `alpr status`) and compares the frames' clock with Redis's. The node (ingest/node.py) makes
one JobPacker and runs `pack_jobs` on its main thread."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from common import defaults
from common.backoff import Backoff
from common.config import Settings
from common.credentials import mask_url
from common.frame_log import FrameRecord
from common.frame_store import FrameStore
from common.jobs import DetectJob, FrameRef, SkipReason
from common.metrics import Metrics
from common.queues import (
    CAMERA_STATE_KEY,
    STATS_INGESTED_KEY,
    STATS_SKIPPED_KEY,
    STATS_UNRECORDED_KEY,
    add_stats,
    enqueue,
    queue_keys,
    stage_queue,
)  # fmt: skip
from ingest.camera_silence import said_states
from ingest.claims import CameraClaims, ClaimRound
from ingest.clock import CaptureClock
from ingest.ledger import FrameLedger
from ingest.store_room import ReserveReached, StoreRoom

if TYPE_CHECKING:
    from ingest.node import NodeSummary

log = logging.getLogger("ingest.node")
"""The node's logger: what the packing says (Redis away and back, a full store, the clocks) is the node's,
as it was before the packing had a module of its own."""

CLOCK_DISAGREEMENT_S = 60.0
"""How far this host's clock may lie from Redis's before it is warned of."""


def job_bytes(batch: list[tuple[FrameRef, bytes]]) -> int:
    """The JPEG bytes a batch's frames hold together."""
    return sum(len(data) for _, data in batch)


STATES_RETRY_S = 60.0
"""After a write of the cameras' states failed while a batch's retry was waited (`wait_out`: the queues' Redis
away too), how long before the next: each to a frozen Redis waited its timeout, every retry (a review)."""


class JobPacker:
    """Packs the frames a node's camera threads sampled into detect jobs and hands them to the chain;
    knows how full the chain is (`depth`) and whether Redis answers (`redis_down`, `redis_gone`,
    `store_full`). What it shares with the node: the frames to pack (`pending`), the stop, the node's
    summary and its cameras' states (written again with every depth refresh, a silent camera's saying so:
    `unheard`), its claims (renewed while packing), and `skip`, by which a frame is counted and recorded
    as skipped."""

    def __init__(
        self,
        settings: Settings,
        queues: redis.Redis,
        frames: redis.Redis,
        pending: queue.Queue[tuple[FrameRef, bytes]],
        *,
        node_id: str,
        clock: CaptureClock,
        metrics: Metrics,
        ledger: FrameLedger | None,
        claims: CameraClaims,
        summary: NodeSummary,
        states: dict[str, str],
        stop: threading.Event,
        skip: Callable[[FrameRef, SkipReason], None],
        on_claims: Callable[[ClaimRound], None] = lambda found: None,
        unheard: Callable[[], dict[str, float]] = dict,
    ) -> None:
        self.settings, self.queues, self.pending = settings, queues, pending
        self.node_id, self.clock, self.metrics, self.ledger, self.claims = node_id, clock, metrics, ledger, claims
        self.summary, self.states, self.stop, self.skip = summary, states, stop, skip
        self.on_claims = on_claims  # a round of claims: cameras lost stop, those won start (IngestNode.claimed)
        self.unheard = unheard  # the cameras judged silent: how long each has sampled nothing (CameraSilence)
        self.store = FrameStore(frames, settings.frame_ttl_s)
        self.store_apart = frames is not queues  # ALPR_FRAME_STORE_URL names a Redis of its own
        self.room = StoreRoom(frames)
        self.detect_queue = stage_queue(queues, "detect", settings.secret("job_key"))
        self.queue_keys = list(queue_keys().values())
        self.depth = 0
        self.in_hand = 0
        """Frames taken from the pending ones into the batch being packed, not queued yet (the recorded
        footage's share counts them: FrameHandOff.recorded_jobs_ahead)."""
        self.deadline: float | None = None  # monotonic; `run(max_seconds)`'s end
        self.store_full = False  # the last job could not be stored: Redis at its maxmemory, or within the reserve
        self.redis_gone = False  # Redis failed a round trip after the stop: the rest is recorded without trying
        self.store_gone = False  # the frame store's own Redis did (ALPR_FRAME_STORE_URL): no more writes tried
        self.states_retry_at = 0.0  # monotonic: no states written while a batch's retry is waited before (`wait_out`)
        self.redis_down = False  # the last round trip to Redis failed: frames skipped meanwhile say so
        self.clock_off = False  # the frames' time and Redis's clock disagree (warned once)
        self.held: list[list[tuple[FrameRef, bytes]]] = []  # footage's batches the full store refused, in order
        self.held_backoff = Backoff(*defaults.STORE_FULL_RETRY_S)
        self.held_retry_at = 0.0  # monotonic: when the held batches are tried again
        self.skipped_reported: Tally[str] = Tally()
        self.unrecorded_reported: Tally[str] = Tally()

    def pack_jobs(self, cameras: list[threading.Thread], deadline: float | None) -> None:
        """Gather sampled frames into detect jobs: full at `frames_per_job`, or at a frame that would take its
        frames' bytes past MAX_JOB_FRAME_BYTES (which the detector reads of a job: a job of 16 8K noise frames held
        380 MB, and the frames past 256 were skipped at detection), or when the oldest frame has waited
        `max_batch_wait_ms`; the rest goes out once the cameras have ended (every camera
        claimed: one another node holds is stood by for). Past `deadline` (time.monotonic(); IngestNode.run's
        `max_seconds`) the node is stopped; meanwhile its claims are renewed (each round handed to `on_claims`:
        the cameras it wins, and those another node took from it, which alone stop) and the chain's depth read."""
        self.deadline = deadline
        batch: list[tuple[FrameRef, bytes]] = []
        oldest = last_depth = 0.0
        wait_s = self.settings.max_batch_wait_ms / 1000
        while True:
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                self.stop.set()
            if self.held and (self.stop.is_set() or now >= self.held_retry_at):
                self.retry_held()
            if now - last_depth >= defaults.QUEUE_DEPTH_REFRESH_S:
                if not (self.stop.is_set() or self.redis_gone):  # nothing more is stored: no read to wait on
                    self.unanswered_at_stop(store=self.room.read())  # its memory: the crops' reserve
                self.refresh_depth()
                last_depth = now
            if not self.stop.is_set():
                began = self.claims.renewed_at
                if (found := self.claims.renew()) is not None:
                    self.on_claims(found)
                self.unanswered_at_stop(queues=self.claims.renewed_at != began and self.claims.stalled())
            carried = None  # a frame the batch has no bytes left for: the next job's first
            with contextlib.suppress(queue.Empty):
                item = self.pending.get(timeout=0.05)
                if batch and job_bytes(batch) + len(item[1]) > defaults.MAX_JOB_FRAME_BYTES:
                    carried = item
                else:
                    oldest = oldest if batch else time.monotonic()
                    batch.append(item)
                    self.in_hand = len(batch)
            done = self.claims.all_held and not any(t.is_alive() for t in cameras)  # none stood by for
            ended = (self.stop.is_set() or done) and self.pending.empty()
            full = len(batch) >= self.settings.frames_per_job or carried is not None
            if batch and (full or ended or time.monotonic() - oldest >= wait_s):
                if batch := self.behind_held(batch) if self.held else batch:  # footage goes behind the held
                    self.flush(batch)
                batch = [carried] if carried else []
                oldest = time.monotonic()
                self.in_hand = len(batch)  # queued now (the depth read after it counts it), held, or recorded skipped
            if ended and not batch and not self.held:  # footage held for room is waited for
                return

    def unanswered_at_stop(self, *, queues: bool = False, store: bool = False) -> None:
        """A round trip to the `queues`' or the frame `store`'s Redis that got no answer, and the node stopped
        meanwhile: nothing more is asked of it, the frames in hand recorded without trying. Each round trip
        to a stalled Redis waits out its timeout (INGEST_REDIS_TIMEOUT_S): a stop that came during the
        store's read then waited on the depth read and on the batch's write too, 28 s (CI), past a
        supervisor's grace. A frame store of its own, stalled, stops the writes alone."""
        if self.stop.is_set() and (queues or (store and not self.store_apart)):
            self.redis_gone = True
        elif self.stop.is_set() and store:
            self.store_gone = True

    @property
    def holding(self) -> bool:
        """Recorded footage's frames are held for room in the full frame store: footage cameras wait."""
        return bool(self.held)

    def retry_held(self) -> None:
        """Try the held footage batches again, oldest first; one refused again keeps the rest behind it.
        After the stop they are recorded as skipped (node_stopped), as footage waiting for room is."""
        batches, self.held = self.held, []
        for index, batch in enumerate(batches):
            if self.stop.is_set():
                for ref, _ in batch:
                    self.skip(ref, "node_stopped")
                continue
            self.flush(batch)
            if self.held:  # refused again (the store still full): tried again after the backoff
                self.held.extend(batches[index + 1 :])
                return

    def flush(self, batch: list[tuple[FrameRef, bytes]]) -> None:
        """Store the frames and queue their detect job; waits out a Redis outage (cameras skip meanwhile)."""
        backoff = Backoff(*defaults.RECONNECT_BACKOFF_S)
        while True:
            if self.stop.is_set() and self.redis_down:
                self.redis_gone = True  # a round trip failed before the stop: it tries no more
            if self.redis_gone or self.store_gone:  # each batch blocked for Redis's timeouts: a stop took minutes
                for ref, _ in batch:
                    self.skip(ref, "redis_unavailable")
                return
            try:
                self.store_and_queue(batch)
                self.redis_up()
                break
            except redis.exceptions.OutOfMemoryError as full:  # maxmemory or the reserve: back-pressure
                reason: SkipReason = "backpressure" if self.queues_answer() else "redis_unavailable"
                self.skip_while_full(batch, reason, stored=not isinstance(full, ReserveReached))
                return
            except redis.RedisError as error:
                self.redis_down = True
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    self.stop.set()  # --max-seconds holds while Redis is away
                if self.stop.is_set():
                    self.redis_gone = True  # never queued: recorded as skipped, not left pending (below)
                    continue
                delay = backoff.next_delay()
                log.warning("Redis unavailable (%s); retrying in %.0f s", mask_url(str(error)), delay)
                self.wait_out(
                    delay if self.deadline is None else min(delay, max(0.0, self.deadline - time.monotonic()))
                )
        self.queued(batch)

    def queued(self, batch: list[tuple[FrameRef, bytes]]) -> None:
        """The batch stored and its detect job queued: recorded pending, counted, the depth read again."""
        if self.store_full:
            log.info("the frame store has room again")
            self.store_full = False
        self.held_backoff.reset()
        if self.ledger:
            self.ledger.add([FrameRecord(ref, "pending") for ref, _ in batch])
        try:  # statistics only: the job is queued
            add_stats(self.queues, {STATS_INGESTED_KEY: dict(Tally(ref.camera_id for ref, _ in batch))})
        except redis.RedisError as error:
            self.unanswered_at_stop(queues=isinstance(error, (redis.ConnectionError, redis.TimeoutError)))
        self.summary.jobs += 1
        self.refresh_depth()  # back-pressure reacts to the job just queued, not half a second later
        for ref, _ in batch:
            self.metrics.frames_ingested.labels(camera=self.metrics.camera(ref.camera_id)).inc()
            self.summary.ingested[ref.camera_id] += 1

    def wait_out(self, delay_s: float) -> None:
        """Wait `delay_s` before a batch's next try (Redis away), or until the stop. Where the frame store is a
        Redis of its own, the cameras' states still go to the queues' each QUEUE_DEPTH_REFRESH_S meanwhile: the
        packer's depth reads write them, and none runs while it waits, so through a store's outage `alpr
        status` showed every camera as the outage found it (a review: a failing camera's errors stuck at 1)."""
        end = time.monotonic() + delay_s
        while not self.stop.wait(max(0.0, min(defaults.QUEUE_DEPTH_REFRESH_S, end - time.monotonic()))):
            if time.monotonic() >= end:
                return
            if self.store_apart and time.monotonic() >= self.states_retry_at:
                try:
                    if states := self.said_states():
                        self.queues.hset(CAMERA_STATE_KEY, mapping=states)
                except redis.RedisError as error:  # the queues away too: not tried again for a while (each try
                    self.states_retry_at = time.monotonic() + STATES_RETRY_S  # to a frozen one waits its timeout)
                    self.unanswered_at_stop(queues=isinstance(error, (redis.ConnectionError, redis.TimeoutError)))

    def said_states(self) -> dict[Any, Any]:
        """The cameras' states for `alpr status`, the silent ones said so (ingest/camera_silence.py)."""
        return said_states(dict(self.states), self.unheard())

    def behind_held(self, batch: list[tuple[FrameRef, bytes]]) -> list[tuple[FrameRef, bytes]]:
        """The batch's recorded footage put behind the footage held for room; its live frames returned."""
        if footage := [item for item in batch if item[0].recorded]:
            self.held.append(footage)
        return [item for item in batch if not item[0].recorded]

    def store_and_queue(self, batch: list[tuple[FrameRef, bytes]]) -> None:
        """Store the frames and queue their detect job (RedisError when Redis refuses or is away; ReserveReached,
        storing nothing, when the frame store is within the crops' reserve)."""
        if self.room.full:
            raise ReserveReached("the frame store is within the reserve kept for the detectors' plate crops")
        job = DetectJob(batch_id=f"{self.node_id}:{self.summary.jobs}", frames=[ref for ref, _ in batch],
                        stored_at_s=self.clock.now(), frame_ttl_s=self.settings.frame_ttl_s)  # fmt: skip
        frames = [(ref.key, data) for ref, data in batch]
        self.store.put_many(frames)
        self.room.stored(frames)
        enqueue(self.detect_queue, job, self.settings.job_timeout_s)

    def queues_answer(self) -> bool:
        """Whether the queues' Redis answers, told apart from a full frame store's (its own server): its
        full answer had counted as the queues' too, so their outage went unrecorded (the frames skipped as
        back-pressure) and the log said "Redis answers again" a dozen times a second (a review)."""
        if self.store_apart:
            try:
                self.queues.ping()
            except redis.RedisError:
                self.redis_down = True
                return False
        self.redis_up()
        return True

    def skip_while_full(
        self, batch: list[tuple[FrameRef, bytes]], reason: SkipReason = "backpressure", *, stored: bool = True
    ) -> None:
        """The frame store at its maxmemory or within the crops' reserve: the batch's frames deleted where some
        may have been `stored`; its live cameras' frames
        skipped (as back-pressure, or as Redis unavailable when the queues' Redis is away too), its recorded
        footage's held, tried again after a backoff (a review: footage lost two thirds of its frames to a
        full store, skipped as back-pressure, where the README promised it waits)."""
        if not self.store_full:
            log.warning("the frame store is full (%s): live cameras' frames are skipped as back-pressure,"
                        " recorded footage waits, until it has room", self.room.describe())  # fmt: skip
        self.store_full = True
        with contextlib.suppress(redis.RedisError):  # those stored before it filled: no job will read them
            if stored:  # (DEL is allowed when full)
                self.store.delete_many([ref.key for ref, _ in batch])
        if footage := [item for item in batch if item[0].recorded]:
            self.held.insert(0, footage)  # (retry_held took the held ones: it puts the rest behind this one)
            self.held_retry_at = time.monotonic() + self.held_backoff.next_delay()
        for ref, _ in batch:
            if not ref.recorded:
                self.skip(ref, reason)

    def refresh_depth(self) -> None:
        """Jobs waiting in all three queues (each holds frames or crops in the frame store), read in the
        round trip that also reports the frames skipped since the last one (for `alpr status`) and reads
        Redis's clock (`compare_clocks`): a camera thread never waits on Redis to skip a frame."""
        if self.redis_gone:
            return
        unreported = self.summary.skipped.copy() - self.skipped_reported  # camera threads add keys meanwhile
        unrecorded = (self.ledger.unrecorded_counts() if self.ledger else Tally()) - self.unrecorded_reported
        try:
            pipe = self.queues.pipeline(transaction=False)
            for key in self.queue_keys:
                pipe.llen(key)
            pipe.time()
            add_stats(self.queues, {STATS_SKIPPED_KEY: dict(unreported), STATS_UNRECORDED_KEY: dict(unrecorded)},
                      pipeline=pipe)  # fmt: skip
            states = self.said_states()
            if states:  # a restarted Redis had lost them: status showed a live camera as "-"
                pipe.hset(CAMERA_STATE_KEY, mapping=states)
            answers = pipe.execute(raise_on_error=False)  # a full store refuses the counts, not the rest
            depths_and_time = answers[: len(self.queue_keys) + 1]
            counts = answers[len(self.queue_keys) + 1 : len(answers) - (1 if states else 0)]
            if refused := next((a for a in depths_and_time if isinstance(a, redis.RedisError)), None):
                raise refused
            self.depth = sum(depths_and_time[:-1])
            seconds, microseconds = depths_and_time[-1]
            self.compare_clocks(seconds + microseconds / 1e6)
            counted = not any(isinstance(answer, Exception) for answer in counts)
        except redis.RedisError as error:  # the last known depth is kept; the cameras' skips say why
            if not self.redis_down:  # at the queue limit no batch goes out: an outage was never logged
                log.warning("Redis unavailable (%s): live cameras' frames are skipped as redis_unavailable, footage"
                            " waits, until it answers", mask_url(str(error)))  # fmt: skip
            self.redis_down = True
            self.unanswered_at_stop(queues=isinstance(error, (redis.ConnectionError, redis.TimeoutError)))
            return
        if counted:
            self.skipped_reported.update(unreported)
            self.unrecorded_reported.update(unrecorded)
        self.redis_up()

    def compare_clocks(self, redis_now_s: float) -> None:
        """Warns once while the frames' time and Redis's clock, the chain's common one, are more than
        CLOCK_DISAGREEMENT_S apart: a box without a real-time clock dated its frames 1970 unwarned."""
        off_s = self.clock.now() - redis_now_s
        if abs(off_s) > CLOCK_DISAGREEMENT_S and not self.clock_off:
            log.warning("the frames' time is %+.0f s off Redis's clock: frames are dated by this host's clock"
                        " (set it right: sightings, alerts and retention go by it)", off_s)  # fmt: skip
        elif abs(off_s) <= CLOCK_DISAGREEMENT_S and self.clock_off:
            log.info("the frames' time agrees with Redis's clock again")
        self.clock_off = abs(off_s) > CLOCK_DISAGREEMENT_S

    def redis_up(self) -> None:
        """Redis answered: after an outage, logged once."""
        if self.redis_down:
            log.info("Redis answers again")
        self.redis_down = False
