"""One lane per receiver in an alert worker: a thread of its own that makes that receiver's delivery
attempts one at a time, and a bounded backlog of the jobs waiting for it.

Why: the worker made every attempt on its one loop, so a receiver that was slow but answered (200
after 4 s, inside its 5 s timeout) or hung to its timeout held every other receiver's alerts behind
it: a review measured a burst of 6 alerts reaching a healthy 'dispatch' receiver 4.7 to 24.8 s late
behind a 4 s dashboard, and, behind a dashboard that hangs with a 20 s timeout, dispatch's alerts
8.7 s late at the median. The rest a failing receiver takes (alert_worker/holds.py) spared the loop
one timeout per alert, but not the first one, and nothing at all for a receiver that answers slowly.
Now the worker's loop only hands each job to its receiver's lane and takes the next: a healthy
receiver's alerts go out within its own round trip, whatever another receiver does.

What a lane guarantees:

- one attempt in flight per receiver per worker (its alerts are not sent to it all at once, and a
  receiver that hangs holds one thread, not a thread per alert);
- a job waiting in the backlog is not claimed: the delivery stays pending in the alerts log, its
  attempt count and back-off untouched (a claim counts an attempt and doubles the next back-off: an
  alert that only waited its turn would have come back later and later), and the delivery is claimed,
  with its lease of the receiver's timeout plus a margin, only as its attempt starts on the lane, so
  the lease covers the attempt as it did on the worker's loop;
- a job already waiting or in flight here (queued again by `due`) is not taken twice;
- a full backlog takes nothing more: the job is dropped, its delivery still pending, and the pool's
  `due` queues it again after ALERT_REQUEUE_AFTER_S (any worker may then take it);
- closed, a lane takes nothing more and hands back what waits (never claimed: the worker marks it to be
  queued again at once), and its thread ends once the attempt in flight has;
- a worker killed loses nothing: what waited was never claimed (pending, queued again by `due`), and
  the attempt in flight holds a lease that runs out, after which the delivery is sent again with the
  same idempotency key.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from common.errors import where_raised
from common.jobs import AlertJob

log = logging.getLogger(__name__)


class Lane:
    """One receiver's attempts in this worker: `work` (claim, attempt, record the outcome) runs on the
    lane's own thread, for one job at a time, in the order they came; at most `capacity` jobs wait."""

    def __init__(
        self,
        receiver: str,
        work: Callable[[AlertJob], None],
        capacity: int,
        halted: Callable[[], bool] = lambda: False,
        failed: Callable[[], None] = lambda: None,
        held_count: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.receiver, self.work, self.capacity, self.halted = receiver, work, capacity, halted
        self.failed, self.held_count = failed, held_count
        """Called on an attempt that raised (counted as a failed job: on the worker's loop it failed the
        job, and the pool's rule on failing jobs fired; on a lane it was one WARNING line, unseen), and
        with how many alerts the lane holds whenever that changes."""
        self.waiting: deque[AlertJob] = deque()
        self.held: set[str] = set()
        """Alert ids waiting here or in flight: a job for one of them again (queued by `due` while it
        waited) is not taken twice."""
        self.busy = False
        """Whether an attempt is in flight."""
        self.closed = False
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None
        """Started with the first job: a worker whose receivers never get an alert holds no thread."""

    def offer(self, job: AlertJob) -> bool:
        """Take `job` for this lane's thread (or find it here already): True; False when the lane is
        closed or its backlog full (the job is dropped; its delivery, never claimed, stays pending)."""
        with self.changed:
            if job.alert_id in self.held:
                return True
            if self.closed or len(self.waiting) >= self.capacity:
                return False
            if self.thread is None:
                # a daemon: an attempt stuck where nothing can cut it (a host name's lookup) cannot keep
                # a stopping worker alive; its lease runs out and the delivery is sent again
                thread = threading.Thread(target=self.run, name=f"alert-lane-{self.receiver}", daemon=True)
                try:
                    thread.start()
                except RuntimeError as error:  # no thread to be had (a container's process limit): the job
                    log.warning("alert %s to %s: no thread for its lane (%s); queued again later", job.alert_id,
                                self.receiver, error)  # fmt: skip
                    return False  # is left pending, and the next job tries again (it stuck the lane for good)
                self.thread = thread
            self.waiting.append(job)
            self.held.add(job.alert_id)
            self.held_count(len(self.held))
            self.changed.notify_all()
            return True

    def run(self) -> None:
        """The lane's thread: the jobs one at a time until the lane is closed and nothing waits."""
        while True:
            with self.changed:
                while not self.closed and (not self.waiting or self.halted()):
                    self.changed.wait(0.05)  # a stop (a signal: nothing notifies) begins no further attempt
                if not self.waiting or self.halted():
                    return
                job = self.waiting.popleft()
                self.busy = True
            try:
                self.work(job)
            except Exception as error:  # Postgres away past its patience, a bug: the lane goes on
                # by its type only (its text may quote a value); the delivery is left to `due`: pending, or
                # sending until its lease runs out
                log.warning("alert %s to %s: not done (%s); left to be queued again", job.alert_id,
                            self.receiver, type(error).__name__)  # fmt: skip
                log.debug("alert %s to %s: not done: %s", job.alert_id, self.receiver, where_raised(error))
                self.failed()
            finally:
                with self.changed:
                    self.busy = False
                    self.held.discard(job.alert_id)
                    self.held_count(len(self.held))
                    self.changed.notify_all()

    def idle(self) -> bool:
        """Nothing waiting and nothing in flight."""
        with self.changed:
            return not self.waiting and not self.busy

    def close(self) -> list[AlertJob]:
        """Take no more jobs; hand back those waiting (never claimed). The attempt in flight goes on."""
        with self.changed:
            self.closed = True
            handed_back = list(self.waiting)
            self.waiting.clear()
            self.held.difference_update(job.alert_id for job in handed_back)
            self.held_count(len(self.held))
            self.changed.notify_all()
            return handed_back

    def join(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the lane's thread to end (close it first); whether it did."""
        if self.thread is not None:
            self.thread.join(max(0.0, timeout_s))
        return self.thread is None or not self.thread.is_alive()
