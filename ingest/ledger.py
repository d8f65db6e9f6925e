"""The ingest node's ledger: a durable row in the frames log for every sampled frame — `pending` for
a frame queued into the chain, `skipped` (with the reason) for one that was not — written in batches
by a background thread. Postgres may be down when the node starts or later: rows wait in a bounded
buffer and go out when it answers; past the buffer, frames are counted as unrecorded (a metric and
one warning), never silently dropped, and memory stays bounded.

With the rows goes each camera's watermark: the capture time before which every frame the camera
sampled has its row (the oldest frame sampled and not yet written, or a moment ago when none is). The
sighting pool groups no read past it, since a frame queued but not yet recorded could still bring
reads. A node that stops takes its watermarks away (its cameras are sampled no more)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import TextIO

from common import defaults
from common.backoff import Backoff
from common.db import DatabaseWriteError
from common.frame_log import FrameLog, FrameRecord
from common.jobs import FrameRef
from common.metrics import Metrics
from common.private_files import make_private_folders
from ingest.stream_lag import MAX_LAG_S

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
"""Rows written per statement batch."""

FLUSH_S = 0.5
"""How often the ledger writes what it holds."""

IDLE_WATERMARK_S = 2.0
"""How often the watermarks of cameras with nothing to write are renewed."""

SPOOL_AFTER_S = 5.0
"""A write unanswered this long has what the ledger holds spooled (as a failed write has), in case the
node is killed before Postgres answers."""

FINISHED_RETRY_S = 30.0
"""After the frames log could not say which frames are finished, how long it is not asked again."""

WATERMARK_MARGIN_S = 1.0
"""A camera with no frame waiting gets a watermark this far before now: a frame's capture time is taken
a moment before the ledger hears of it."""


ADOPT_AGAIN_S = 2.0
"""How often, at most, a ledger that left spool files for want of room adopts again once its buffer has
drained (`adopt_spools`): each pass reads the files it tries."""

SPOOL_PATTERN = "ledger-*.jsonl"
"""The spool files of a spool folder: one per ledger that spooled, `ledger-<pid>-<ms>.jsonl`."""


def record_line(record: FrameRecord) -> str:
    """One spooled record: a line of JSON."""
    fields_ = {field.name: getattr(record, field.name) for field in fields(record)}
    return json.dumps({**fields_, "frame": record.frame.model_dump(mode="json")}) + "\n"


def iter_spool(lines: Iterable[str]) -> Iterator[FrameRecord | None]:
    """The records of a spool file's lines, one at a time (a file may hold more than the ledger has room
    for); None for a line that cannot be read (the last one cut short by a kill mid-write, say)."""
    for line in lines:
        try:
            fields = json.loads(line)
            record: FrameRecord | None = FrameRecord(**{**fields, "frame": FrameRef.model_validate(fields["frame"])})
        except (ValueError, TypeError, KeyError):
            record = None
        yield record


def read_spool(lines: Iterable[str]) -> tuple[list[FrameRecord], int]:
    """The records of a spool file's lines, and how many could not be read."""
    read = list(iter_spool(lines))
    records = [record for record in read if record is not None]
    return records, len(read) - len(records)


def sync_folder(folder: Path) -> None:
    """Make a folder's entries durable (a file made in it, one removed): without it a power cut may keep
    a removal made after a file was made, and lose the file."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class FrameLedger:
    """Buffers frame records and writes them to the frames log from its own thread. With a spool folder,
    what it holds while Postgres is away is also appended to a file there (the node may be killed before
    Postgres is back), and a ledger that starts writes the files of ledgers gone (see `adopt_spools`)."""

    def __init__(
        self, open_log: Callable[[], FrameLog], metrics: Metrics, capacity: int, now: Callable[[], float] = time.time,
        spool_dir: Path | None = None,
    ) -> None:  # fmt: skip
        self.open_log, self.metrics, self.capacity = open_log, metrics, capacity
        self.spool_dir = spool_dir
        self.spool: TextIO | None = None
        """This ledger's spool file, open (and locked) from the first failed write until the buffer drains."""
        self.spool_path: Path | None = None
        self.adopted: dict[Path, int | None] = {}
        """Spool files whose records this ledger holds and its open spool does not: those of ledgers gone
        it adopted, and its own former spool once that held their records and could be appended to no
        more (`_drop_spool`). Each is held locked by its descriptor (None: the lock could not be kept), so
        that no ledger starting meanwhile adopts it too; removed once their records are written, or once
        this ledger's spool holds them (`_release_adopted`), or counted unrecorded at the stop."""
        self.left_behind = False
        """Whether the last adoption left spool files for want of room: it adopts again once the buffer has
        drained (`run`)."""
        self.adopt_after = 0.0  # monotonic: adoption is not tried again before then
        self.spool_holds_adopted = False
        """Whether the open spool holds records of adopted files since removed: on disk nowhere else."""
        self.now = now  # the clock the node dates its frames by: a watermark is a capture time
        self.frame_log: FrameLog | None = None
        self.buffer: deque[FrameRecord] = deque()
        self.lock = threading.Lock()
        self.opening = threading.Lock()  # guards setting `frame_log`
        self.unanswered_until = 0.0  # monotonic: until then `finished` does not ask again
        self.wake = threading.Event()
        self.closing = threading.Event()
        self.stopped = threading.Event()  # close() has given up waiting
        self.overflowing = False
        self.marks_written = 0.0
        self.in_flight: list[FrameRecord] = []
        """The batch the thread is writing (taken from the buffer, not yet written nor put back)."""
        self.write_began: float | None = None
        """When (monotonic) the write in progress began; None between writes."""
        self.spool_failing = False
        """Whether the last spool write failed (warned once until one succeeds)."""
        self.outstanding: dict[str, dict[str, float]] = {}
        """Per camera, the frames sampled and not yet written (frame id -> capture time), oldest first."""
        self.last_dates: dict[str, tuple[float, bool]] = {}
        """Per camera whose next frame may be dated before now, its last frame's date and whether it is
        recorded footage (_watermarks)."""
        self.unrecorded: Counter[str] = Counter()
        """Per camera, the frames whose record could not be kept, all time (`alpr status` shows them)."""
        self.thread = threading.Thread(target=self.run, name="frame-ledger", daemon=True)
        self.watchdog = threading.Thread(target=self.watch_writes, name="frame-ledger-watchdog", daemon=True)

    def start(self) -> None:
        self.adopt_spools()
        self.thread.start()
        if self.spool_dir is not None:
            self.watchdog.start()

    def watch_writes(self) -> None:
        """Spool what is held once a write has gone SPOOL_AFTER_S without an answer: a Postgres that hangs
        (a frozen host, a network cut) fails no write, and the spool, opened on a failure, never was;
        a node killed then lost every record since, with no count and no word (a review: 198 frames)."""
        tried_for: float | None = None  # the stalled write the spool was tried for: once each (a spool that
        while not self.stopped.wait(1.0):  # cannot be written was tried every second, the buffer under the lock)
            with self.lock:
                began = self.write_began
                if began is None or began == tried_for or self.spool is not None:
                    continue
                if time.monotonic() - began < SPOOL_AFTER_S:
                    continue
                tried_for = began
                self._open_spool()
                if self.spool is not None:
                    log.warning("frames log: a write unanswered for %.0f s (Postgres not answering?): records"
                                " spooled until it is", time.monotonic() - began)  # fmt: skip

    def adopt_spools(self) -> None:
        """The records ledgers gone left in the spool folder (killed while Postgres was away: their frames
        had no row, and no count as unrecorded), first in line: each frame once, and no more than the
        buffer has room for (`capacity`). A file a live ledger holds locked is its (its own spool, or one
        it adopted).

        Whole files are taken while their records fit in the room left; the first that does not is left
        on disk, unlocked, and no file after it is claimed: the ledger adopts again once its buffer has
        drained (`run`, at most every ADOPT_AGAIN_S), and a node starting meanwhile takes what it has room
        for. Taking every file and counting what did not fit as unrecorded, their files removed, lost 13
        of 18 records with Postgres up (a review: nodes on a host share the folder, a power cut during an
        outage kills them all, and the first to restart took every file, the second found none).

        Only a file that alone has more records than the room (one spooled by a node of a larger capacity,
        or a spool that grew with records written while Postgres came and went) is split: taken whole
        it passed the capacity, and left whole it would never fit. Its first records go to a new file this
        ledger holds locked, the rest to another new file left for later, both made under a name no
        ledger claims, synced and then named as spool files (`_write_spool_file`), and only then is the
        original removed: a kill at any step leaves every record on disk (twice at worst: repeats are
        dropped by frame id, and a row is inserted only when missing). Taking its first `room` records
        and leaving the file whole was no choice: each pass would take the same records again.

        A file adopted stays locked until its records are written or this ledger's spool holds them, and
        is removed then (`_release_adopted`). Copied into each new node's spool on a failed write and left
        in place, the files doubled with every node killed in turn while Postgres was away (a review:
        2,550 records for 80 frames after 8 kills), and the next node took them all into memory, past its
        capacity, so that every frame it sampled went unrecorded. Unlocked once read, a file was adopted
        by a second node starting meanwhile as well.

        A node killed after its spool holds the records and before the files it adopted are gone leaves
        those records twice: repeats are dropped here by frame id (and a row written twice is written
        once: a sampled frame's row is inserted only when it has none). Files read while cameras filled
        the buffer are let go, left on disk, where their records no longer fit: the buffer never holds
        more than `capacity`."""
        self.adopt_after = time.monotonic() + ADOPT_AGAIN_S
        if self.spool_dir is None or not self.spool_dir.is_dir():
            return
        with self.lock:
            seen = {record.frame.frame_id for record in (*self.in_flight, *self.buffer)}
            room = max(0, self.capacity - len(self.buffer))
        read: list[tuple[Path, int | None, list[FrameRecord], str]] = []  # (file, its claim, records, note)
        left_behind = False
        for path in sorted(self.spool_dir.glob(SPOOL_PATTERN)):
            room_left = room - sum(len(records) for _, _, records, _ in read)
            if room_left <= 0:
                left_behind = True
                break
            descriptor = self._claim(path)
            if descriptor is None:
                continue
            try:
                every, fresh, notes = self._read_claimed(descriptor, seen)
            except OSError as error:  # it cannot be read (an I/O error): left to the next node
                log.warning("frames log: %s cannot be read (%s): left as it is", path, error)
                os.close(descriptor)
                continue
            if len(fresh) > room_left:
                left_behind = True
                if read:  # whole files only: this one waits until the buffer has drained
                    os.close(descriptor)
                    break
                split = self._split(path, descriptor, fresh[:room_left], every)
                if split is None:
                    break
                path, descriptor = split
                notes.append(f"{len(fresh) - room_left} left in a file of their own for later")
                fresh = fresh[:room_left]
            read.append((path, descriptor, fresh, ", ".join(note for note in notes if not note.startswith("0 "))))
            seen.update(record.frame.frame_id for record in fresh)
        left_behind = not self._take(read) or left_behind
        self.left_behind = left_behind
        if left_behind:
            log.info("frames log: spool files in %s left for when this node's buffer has room (or another"
                     " node's)", self.spool_dir)  # fmt: skip

    def _take(self, read: list[tuple[Path, int | None, list[FrameRecord], str]]) -> bool:
        """Adopt the files read (each with its claim, its records to take and a note for the log), in turn
        while their records fit in the room the buffer has now (cameras may have added meanwhile); the
        rest are let go, left on disk. Whether all were adopted."""
        taken: list[FrameRecord] = []
        every_one = True
        with self.lock:
            room = max(0, self.capacity - len(self.buffer))
            for path, descriptor, records, note in read:
                if len(taken) + len(records) > room:  # let go, left on disk: for later, or another node
                    if descriptor is not None:
                        with contextlib.suppress(OSError):
                            os.close(descriptor)
                    room, every_one = 0, False  # (and those after it: in turn)
                    continue
                taken += records
                self.adopted[path] = descriptor
                log.warning("frames log: %d frame records a stopped ingest node left in %s are written now%s",
                            len(records), path, f" ({note})" if note else "")  # fmt: skip
            self.buffer.extendleft(reversed(taken))
            if self.spool is not None and self.adopted:  # (a ledger spooling already: its spool takes them)
                self._spool_records(taken)
                self._release_adopted()
        return every_one

    @staticmethod
    def _read_claimed(descriptor: int, seen: set[str]) -> tuple[list[FrameRecord], list[FrameRecord], list[str]]:
        """A claimed spool file's readable records (repeats and all), those of frames not in `seen` (each
        once), and notes for the log (repeats, lines that could not be read)."""
        every: list[FrameRecord] = []
        fresh: list[FrameRecord] = []
        ids: set[str] = set()
        broken = 0
        with open(descriptor, encoding="utf-8", errors="replace", closefd=False) as lines:
            for record in iter_spool(lines):
                if record is None:
                    broken += 1
                    continue
                every.append(record)
                if record.frame.frame_id not in seen and record.frame.frame_id not in ids:
                    ids.add(record.frame.frame_id)
                    fresh.append(record)
        return every, fresh, [f"{len(every) - len(fresh)} repeated", f"{broken} lines unreadable"]

    def _split(self, path: Path, descriptor: int, first: list[FrameRecord],
               every: list[FrameRecord]) -> tuple[Path, int | None] | None:  # fmt: skip
        """Split the spool file `path` (claimed: `descriptor`) that alone holds more records than this
        ledger has room for: `first` to a new file held locked (its path and claim are returned), every
        other record of `every` to a second new file left unlocked for later, both synced, and the folder;
        then `path` is removed (still locked) and let go. None when the files cannot be written (a full
        disk): what was made of them is removed, and `path` left whole, unlocked. See `adopt_spools`."""
        assert self.spool_dir is not None
        firsts = {record.frame.frame_id for record in first}
        rest = [record for record in every if record.frame.frame_id not in firsts]
        made: list[Path] = []
        try:
            kept, claim = self._write_spool_file(self.spool_dir, first, keep_locked=True)
            made.append(kept)
            if rest:
                made.append(self._write_spool_file(self.spool_dir, rest, keep_locked=False)[0])
            sync_folder(self.spool_dir)
            path.unlink()  # (the made files hold every record now: from here on they stay)
        except OSError as error:
            log.warning("frames log: %s holds more records than this node has room for and cannot be split"
                        " (%s): left as it is, for later or a node with more room", path, error)  # fmt: skip
            for made_path in made:  # (their records are all in `path` still)
                with contextlib.suppress(OSError):
                    made_path.unlink()
            if made:
                with contextlib.suppress(OSError):
                    os.close(claim)
            os.close(descriptor)
            return None
        with contextlib.suppress(OSError):  # (a power cut undoing the removal leaves repeats, no loss)
            sync_folder(self.spool_dir)
        os.close(descriptor)
        return kept, claim

    @classmethod
    def _write_spool_file(cls, folder: Path, records: list[FrameRecord], keep_locked: bool) -> tuple[Path, int]:
        """A new spool file in `folder` holding `records`: written and synced under a name no ledger
        claims (made with O_EXCL), locked meanwhile, and only then linked under a spool file's name (a
        name no file has) and its first name removed. Made under its spool name, it could be claimed by
        another ledger before it was locked, or read before it was whole, and removed by that ledger with
        the records it had not read. Its path and its descriptor: open and locked with `keep_locked`,
        else closed (the returned number then means nothing)."""
        temp, name = "", ""
        descriptor, temp = tempfile.mkstemp(prefix=".ledger-split-", suffix=".part", dir=folder)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with open(descriptor, "w", encoding="utf-8", closefd=False) as file:
                file.write("".join(record_line(record) for record in records))
            os.fsync(descriptor)
            stamp = int(time.time() * 1000)
            while True:
                name = str(folder / f"ledger-{os.getpid()}-{stamp}.jsonl")
                try:
                    os.link(temp, name)
                    break
                except FileExistsError:
                    stamp += 1
            os.unlink(temp)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            os.close(descriptor)
            raise
        if not keep_locked:
            os.close(descriptor)
        return Path(name), descriptor

    def _claim(self, path: Path) -> int | None:
        """A spool file of a ledger gone, opened and locked (its descriptor), or None: a live ledger's
        (locked), another user's or one others may write (their rows would be taken for ours), a link, or
        one gone once locked (removed by the ledger that held it, its records written or in its spool)."""
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a link: refused
        except OSError:
            return None
        claimed = False
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode) or status.st_uid != os.getuid() or status.st_mode & 0o022:
                log.warning("frames log: %s is not a spool file of this user's (another owner's, or"
                            " writable by others): left alone", path)  # fmt: skip
            else:  # (a folder others may write to: their rows would be taken for ours)
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked, named = os.fstat(descriptor), os.stat(path, follow_symlinks=False)
                claimed = locked.st_nlink > 0 and (locked.st_dev, locked.st_ino) == (named.st_dev, named.st_ino)
        except OSError:  # a live ledger's, or gone
            pass
        if not claimed:
            with contextlib.suppress(OSError):
                os.close(descriptor)
            return None
        return descriptor

    def _release_adopted(self) -> None:
        """The spool, just written with every record this ledger holds, holds those of the adopted files:
        it is made durable (the file synced, and the folder, so that a power cut cannot keep the removals
        and lose the file), then the adopted files are removed, and only then unlocked (a ledger that
        locks one after finds it gone: `_claim`). A kill between leaves records twice, never nowhere.
        Under the lock."""
        if self.spool is None or self.spool_dir is None or not self.adopted:
            return
        try:
            self.spool.flush()
            os.fsync(self.spool.fileno())
            sync_folder(self.spool_dir)
        except OSError as error:
            if not self.spool_failing:
                log.warning("frames log spool %s cannot be synced (%s): records held in memory only, and in the"
                            " files adopted", self.spool_path, error)  # fmt: skip
            self.spool_failing = True
            self._drop_spool()  # the adopted files stay: their records are on disk there
            return
        self._let_go_adopted(remove=True)
        self.spool_holds_adopted = True

    def _let_go_adopted(self, remove: bool) -> None:
        """Unlock the adopted files, with `remove` removed first (while locked). Under the lock."""
        for path, descriptor in self.adopted.items():
            if remove:
                with contextlib.suppress(OSError):  # one left holds only records held elsewhere: repeats
                    path.unlink()
            if descriptor is not None:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
        self.adopted = {}

    def _spool_records(self, records: list[FrameRecord]) -> None:
        """Append records to the spool file (flushed: a kill of the process leaves them). A spool file
        removed meanwhile (its folder deleted) is made anew with every record held: they were appended to
        a file no one would read, and the node said at its stop that they were kept (a review). Under the lock."""
        if self.spool is None or not records:
            return
        if self._spool_gone():
            self._open_spool()  # anew, with every record held, these among them
            return
        try:
            self.spool.write("".join(record_line(r) for r in records))
            self.spool.flush()
            self.spool_failing = False
        except OSError as error:
            if not self.spool_failing:
                log.warning("frames log spool %s: %s: records held in memory only", self.spool_path, error)
            self.spool_failing = True
            self._drop_spool()  # its records are all held in memory: a partial file left was adopted by the
            # next node, which wrote rows for frames this one counted unrecorded (a review: 19 counted twice)

    def _spool_gone(self) -> bool:
        """Whether the open spool file is no longer at its path (removed, or its folder). Under the lock."""
        if self.spool is None or self.spool_path is None:
            return False
        try:
            opened, named = os.fstat(self.spool.fileno()), os.stat(self.spool_path, follow_symlinks=False)
        except OSError:
            return True
        return opened.st_nlink == 0 or (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino)

    def _drop_spool(self) -> None:
        """Close this ledger's own spool file and remove it (its records are all held in memory), adopted
        files left as they are. A spool that holds records of adopted files since removed
        (`spool_holds_adopted`) is kept, locked, among the adopted files: those records are on disk
        nowhere else, and a node killed after would lose them with no count; it goes as they do (written,
        spooled anew, or counted unrecorded at the stop). Under the lock."""
        path, spool = self.spool_path, self.spool
        keep = path is not None and spool is not None and self.spool_holds_adopted and not self._spool_gone()
        if keep and path is not None and spool is not None:
            claim: int | None = None
            with contextlib.suppress(OSError):
                claim = os.dup(spool.fileno())  # the lock stays while this descriptor is open
            self.adopted[path] = claim
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.close()
            self.spool = None
        if path is not None and not keep:
            with contextlib.suppress(OSError):
                path.unlink()
        self.spool_path = None
        self.spool_holds_adopted = False

    def _open_spool(self) -> None:
        """Postgres failed a write: spool what the buffer holds and, until it drains, what comes. Under the lock."""
        if self.spool_dir is None:
            return
        if self.spool is not None:
            if not self._spool_gone():
                return
            log.warning("frames log spool %s was removed: spooling anew", self.spool_path)
            self._drop_spool()
        try:
            make_private_folders(self.spool_dir)
            self.spool_path, descriptor = self._new_spool_file(self.spool_dir)
            self.spool = os.fdopen(descriptor, "a", encoding="utf-8")
            fcntl.flock(self.spool, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if not self.spool_failing:
                log.warning("frames log spool in %s cannot be written (%s): records held in memory only",
                            self.spool_dir, error)  # fmt: skip
            self.spool_failing = True
            self._drop_spool()
            return
        self.spool_holds_adopted = False  # (until `_release_adopted`)
        self._spool_records([*self.in_flight, *self.buffer])
        self._release_adopted()  # they were copied in: were the files left, each kill in turn doubled them

    @staticmethod
    def _new_spool_file(folder: Path) -> tuple[Path, int]:
        """A spool file made in `folder` (its path, and a descriptor open for appending): a name no file
        has, as this ledger's former spool, kept (`_drop_spool`), may have the name a new one made in the
        same millisecond would, and opened again, its lock refused, it was removed."""
        stamp = int(time.time() * 1000)
        while True:
            path = folder / f"ledger-{os.getpid()}-{stamp}.jsonl"
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW
                return path, os.open(path, flags, 0o600)
            except FileExistsError:
                stamp += 1

    def _close_spool(self, delete: bool) -> None:
        """Close the spool file; with `delete`, every record of it and of the adopted files is written:
        they are removed, each before it is unlocked. Under the lock."""
        if delete and self.spool_path is not None:
            with contextlib.suppress(OSError):
                self.spool_path.unlink()
        if self.spool is not None:
            with contextlib.suppress(OSError):
                self.spool.close()
            self.spool = None
        if delete:
            self.spool_path = None
            self._let_go_adopted(remove=True)

    def sampled(self, ref: FrameRef, dated_back: bool = False) -> None:
        """A frame was just sampled: the camera's watermark stays before it until its row is written, and
        at its date after, for recorded footage or when the camera's next frame may be dated back
        (`dated_back`: a stream whose timestamps are trusted)."""
        with self.lock:
            self.outstanding.setdefault(ref.camera_id, {})[ref.frame_id] = ref.captured_at_s
            if ref.recorded or dated_back:
                self.last_dates[ref.camera_id] = (ref.captured_at_s, ref.recorded)
            else:
                self.last_dates.pop(ref.camera_id, None)

    def ended(self, camera_id: str) -> None:
        """The camera samples no more frames (its file ended, it failed, or the node stops)."""
        with self.lock:
            self.last_dates.pop(camera_id, None)

    def add(self, records: list[FrameRecord]) -> None:
        """Buffer records for the next write; beyond `capacity` they go unrecorded (counted, warned).
        A frame's region of interest is dropped first: no row holds it, and a 256-point polygon made
        each buffered record ten times its size while Postgres was away."""
        records = [replace(r, frame=r.frame.model_copy(update={"roi": None})) if r.frame.roi else r for r in records]
        with self.lock:
            room = max(0, self.capacity - len(self.buffer))
            self.buffer.extend(records[:room])
            self._spool_records(records[:room])
            overflow = records[room:]
            self._settle(overflow)  # never written: they hold no watermark back
        self._count_unrecorded(overflow)
        if overflow and not self.overflowing:
            log.warning("frames log unreachable and %d records waiting: further frames go unrecorded", self.capacity)
        self.overflowing = bool(overflow)

    def run(self) -> None:
        backoff = Backoff(*defaults.RECONNECT_BACKOFF_S)
        while not self.stopped.is_set():
            self.wake.wait(FLUSH_S)
            self.wake.clear()
            if self.left_behind and not self.closing.is_set() and time.monotonic() >= self.adopt_after:
                with self.lock:
                    drained = not self.buffer
                if drained:  # every record held is written: the spool files left for want of room, their turn
                    self.adopt_spools()
            with self.lock:
                batch = [self.buffer.popleft() for _ in range(min(BATCH_ROWS, len(self.buffer)))]
                self.in_flight = batch
                closing = self.closing.is_set() and not batch and not self.buffer
                idle = not batch and not closing and time.monotonic() - self.marks_written < IDLE_WATERMARK_S
                marks = {} if idle else self._watermarks(batch, closing)
            if not batch and not marks:
                if self.closing.is_set():
                    return
                continue
            try:
                with self.lock:
                    self.write_began = time.monotonic()
                frame_log = self.connected_log()
                try:
                    frame_log.record_sampled(batch, marks)
                except DatabaseWriteError as refused:
                    if not refused.of_the_data:
                        raise
                    self.write_apart(batch, marks, refused)  # one row it refuses held every frame after it
                self.marks_written = time.monotonic()
                with self.lock:
                    self.write_began = None
                    self._settle(batch)
                    self.in_flight = []
                    if (self.spool_path or self.adopted) and not self.buffer:
                        self._close_spool(delete=True)  # every record of them written
                if closing:
                    return
                if backoff.failures:
                    log.info("frames log reachable again")
                backoff.reset()
                self.wake.set()  # more may be waiting
            except Exception as error:  # Postgres down (or its schema missing): keep the rows, try again later
                self.retry_later(batch, error, backoff)  # rows written meanwhile are written alike again

    def connected_log(self) -> FrameLog:
        """The frames log, opened at first use (by the writer, or by a camera asking what is finished);
        opened outside the lock, so that a Postgres that does not answer holds no other thread back."""
        if self.frame_log is None:
            frame_log = self.open_log()
            with self.opening:
                if self.frame_log is None:
                    self.frame_log = frame_log
                else:  # another thread opened it meanwhile
                    frame_log.pool.close()
        return self.frame_log

    def finished(self, frame_ids: Iterable[str]) -> dict[str, tuple[int, float]] | None:
        """Of `frame_ids`, those the frames log holds as ended for good (FrameLog.finished), or None when
        it cannot say (Postgres away; asked again only after FINISHED_RETRY_S: six cameras starting while
        it was away waited 3 s each in turn, the last 18 s)."""
        if time.monotonic() < self.unanswered_until:
            return None
        try:
            return self.connected_log().finished(frame_ids)
        except Exception as error:  # Postgres down, its schema missing: the caller reads it all
            self.unanswered_until = time.monotonic() + FINISHED_RETRY_S
            log.debug("frames log: cannot say which frames are finished: %s", error)
            return None

    def grouped_until(self, camera_id: str) -> float | None:
        """How far the sighting pool has grouped the camera (common/sighting_log.grouped_until), or None
        when it cannot say (Postgres away)."""
        from common.sighting_log import grouped_until

        try:
            with self.connected_log().pool.connection() as connection:
                return grouped_until(connection, camera_id)
        except Exception as error:  # Postgres down, its schema missing: the caller dates from now
            log.debug("frames log: cannot say how far camera %s was grouped: %s", camera_id, error)
            return None

    def retry_later(self, batch: list[FrameRecord], error: Exception, backoff: Backoff) -> None:
        """Put the batch back first in line and wait with backoff (bounded by close())."""
        with self.lock:
            self.write_began = None
            self.buffer.extendleft(reversed(batch))
            self.in_flight = []
            self._open_spool()
            if self.spool is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self.spool.fileno())  # and a power cut
        delay = backoff.next_delay()
        if self.closing.is_set():  # close() bounds how long this goes on
            delay = min(delay, 1.0)
        if backoff.failures == 1:
            reason = (str(error).splitlines() or [type(error).__name__])[0]  # a message may be empty
            log.warning("frames log unavailable (%s); retrying with backoff", reason)
        # close() wakes the wait for one last try; after it, `stopped` bounds the retries
        (self.stopped if self.closing.is_set() else self.closing).wait(delay)

    def write_apart(self, batch: list[FrameRecord], marks: dict[str, float | None], error: Exception) -> None:
        """Postgres refused the batch for what a row holds: each row alone, so that only the rows it
        refuses go unrecorded (counted, warned), then the watermarks. Retried as a whole, the batch held
        every frame sampled after it, until the buffer overflowed."""
        assert self.frame_log is not None
        refused = []
        for record in batch:
            try:
                self.frame_log.record_sampled([record], {})
            except DatabaseWriteError as alone:
                if not alone.of_the_data:
                    raise
                refused.append(record)
        self.frame_log.record_sampled([], marks)
        self._count_unrecorded(refused)
        log.warning("frames log refused %d of %d records (%s): those frames go unrecorded", len(refused),
                    len(batch), error)  # fmt: skip

    def _count_unrecorded(self, records: list[FrameRecord]) -> None:
        """These frames will have no record: counted in the metric and in `unrecorded`."""
        self._count_unrecorded_cameras(Counter(record.frame.camera_id for record in records))

    def _count_unrecorded_cameras(self, cameras: Counter[str]) -> None:
        """So many frames of each camera will have no record: counted in the metric and in `unrecorded`."""
        for camera_id, count in cameras.items():
            self.metrics.frames_unrecorded.labels(camera=self.metrics.camera(camera_id)).inc(count)
        with self.lock:
            self.unrecorded.update(cameras)

    def unrecorded_counts(self) -> Counter[str]:
        """A copy of `unrecorded` (other threads add to it)."""
        with self.lock:
            return self.unrecorded.copy()

    def _settle(self, records: list[FrameRecord]) -> None:
        """These frames' rows are written (or never will be). Under the lock."""
        for record in records:
            self.outstanding.get(record.frame.camera_id, {}).pop(record.frame.frame_id, None)

    def _watermarks(self, batch: list[FrameRecord], closing: bool) -> dict[str, float | None]:
        """Each camera's watermark once `batch` is written (None for every camera when the node is
        closing with nothing left): its oldest frame still to write, else a moment ago, or its last frame's
        date when that is earlier, as the next frame is dated after it but may be dated before now: by
        the footage for recorded footage (which may run behind the clock), by the stream's timestamps
        for a stream's frame read late (at most MAX_LAG_S before now: a stream that went silent holds
        its watermark back no further). Frames of a stall, dated back into it, fell behind a watermark
        already written, and their reads were never grouped (a review). Under the lock."""
        if closing:
            return dict.fromkeys(self.outstanding)
        written = {record.frame.frame_id for record in batch}
        now_s = self.now()
        marks: dict[str, float | None] = {}
        for camera_id, frames in self.outstanding.items():
            waiting = (captured_at_s for frame_id, captured_at_s in frames.items() if frame_id not in written)
            settled_s = now_s - WATERMARK_MARGIN_S
            if camera_id in self.last_dates:
                last_s, recorded = self.last_dates[camera_id]
                settled_s = min(settled_s, last_s if recorded else max(last_s, settled_s - MAX_LAG_S))
            marks[camera_id] = next(waiting, settled_s)  # frames are sampled in order
        return marks

    def close(self, timeout_s: float) -> int:
        """Write what is left (up to `timeout_s`); returns how many records could not be written, each
        counted as unrecorded and warned of: the buffer's and the batch the thread is still trying to
        write. Only the buffer was counted, and not in the metric: a node stopped while Postgres was
        down or its pool reconnecting exited with 117 frames unrecorded, silently (a fault drill)."""
        self.closing.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        self.stopped.set()
        with self.lock:  # the thread (a daemon) may finish a write after this: counted all the same
            left = [*self.in_flight, *self.buffer] if self.thread.is_alive() else list(self.buffer)
            spooled = False
            if left and self.spool_dir is not None:
                self._open_spool()  # (open already when Postgres failed a write: it holds them, and the
                spooled = self.spool is not None  # adopted files' records, those files removed)
                if spooled:
                    self._close_spool(delete=False)
        if spooled:
            log.warning("%d frame records could not be written to the frames log: kept in the spool folder %s,"
                        " written by the next ingest node that starts with it", len(left), self.spool_dir)  # fmt: skip
            return 0
        with self.lock:  # no spool could be made (a full disk): the adopted files stay, unlocked, for the next
            on_disk = self._adopted_frame_ids()  # node; only what they do not hold is lost
            self._let_go_adopted(remove=False)
        lost = [record for record in left if record.frame.frame_id not in on_disk]
        self._count_unrecorded(lost)
        if lost:
            log.warning("%d frame records could not be written to the frames log: those frames go unrecorded%s",
                        len(lost), f" ({len(left) - len(lost)} kept in the spool folder)" if len(lost) < len(left)
                        else "")  # fmt: skip
        return len(lost)

    def _adopted_frame_ids(self) -> set[str]:
        """The frames whose records the adopted files hold, read back from disk. A stop that could make no
        spool (a full disk) counted every record held unrecorded and removed the adopted files, though their
        records were safely on disk for the next node (a review: 60 counted and deleted, 10 lost). Read
        back rather than remembered: a file may hold fewer than were put in it (a write cut short). A file
        that cannot be read holds none here: its records are counted, and may be written later as well
        (a row counted unrecorded and written, rather than one lost without a count). Under the lock."""
        held: set[str] = set()
        for path in self.adopted:
            try:  # (by its path, which names it while it is held: a kept spool's claim is open for writing)
                with path.open(encoding="utf-8", errors="replace") as lines:
                    records = read_spool(lines)[0]
            except OSError:
                continue
            held.update(record.frame.frame_id for record in records)
        return held
