"""The ingest node's ledger spool (`Spool`, held by ingest/ledger.py's FrameLedger): what the ledger holds
is also appended to a spool file of its own in the spool folder, so that a node killed (SIGKILL, the OOM
killer, a power cut) leaves its records on disk: each record as it is made, and each frame as it is
sampled (a line the frame's record supersedes: a frame sampled and killed before it was recorded, in the
packing or its job just queued, is written `lost` by the next node where no stage wrote its row). Outside
an outage the file is started anew once every record is written (`written`): it holds the last half
second or so. A ledger that starts adopts the
files of ledgers gone, no more records than its buffer has room for (a file that alone holds more is
split), and adopts again once its buffer has drained. The files a ledger holds are locked: no other
ledger takes them. The buffer, the writes to Postgres and the watermarks are ingest/ledger.py's: the
spool is handed the ledger's buffer, its batch in flight and the lock that guards them. A spool file is
named for the database it is for (`tag`), and only the files of this ledger's database are adopted (and
untagged ones, an earlier version's). Each file on its
own (a record's line, a file made, claimed, read or split, a split's leftovers removed) is
ingest/spool_files.py's."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from common.frame_log import FrameRecord
from common.jobs import FrameRef
from common.private_files import make_private_folders
from ingest.spool_files import (
    SPOOL_PATTERN,
    claim_file,
    file_tag,
    new_spool_file,
    read_claimed,
    read_spool,
    record_line,
    sampled_record,
    split_file,
    sync_folder,
)

log = logging.getLogger(__name__)

SPOOL_RETRY_S = 5.0
"""How long a spool that could not be made or written waits before a record made tries it again."""

SPOOL_COMPACT_LINES = 1000
"""Lines a spool may hold beyond twice what its ledger holds before a write's end starts it anew (`compact`):
each record is copied about once on average, and a quiet node never copies."""

ADOPT_AGAIN_S = 2.0
"""How often, at most, a ledger that left spool files for want of room adopts again once its buffer has
drained (`adopt`): each pass reads the files it tries."""


class Spool:
    """The spool files of a FrameLedger: its own spool, open while the ledger holds anything not yet
    written (a record, a frame sampled and not yet given one) and started anew once all is written, and
    the files of ledgers gone it adopted. The ledger's buffer, batch in flight, lock and
    capacity are handed in, shared with the ledger; a method said to run under the lock is called with
    `lock` held."""

    def __init__(
        self,
        folder: Path | None,
        buffer: deque[FrameRecord],
        in_flight: list[FrameRecord],
        lock: threading.Lock,
        capacity: int,
        tag: str = "",
    ) -> None:
        self.folder = folder
        """The spool folder (ALPR_LEDGER_SPOOL_DIR); None: nothing is spooled."""
        self.buffer = buffer
        """The records waiting to be written, oldest first (the ledger's)."""
        self.in_flight = in_flight
        """The batch the ledger's writer thread is writing (the ledger's, changed in place)."""
        self.lock = lock
        """Guards the buffer, the batch in flight and the spool state (the ledger's)."""
        self.capacity = capacity
        """How many records the buffer holds at most (the ledger's)."""
        self.tag = tag
        """The identity of the database this ledger writes to (spool_files.database_tag): its spool files
        are named with it, and only files named with it (or untagged) are adopted."""
        self.foreign_warned = False
        """Whether the spool files of another database in the folder were warned of (once)."""
        self.file: TextIO | None = None
        """This ledger's own spool file, open (and locked) while the ledger holds anything not yet written
        (`journal`, `journal_sampled`); each record held is in it."""
        self.file_path: Path | None = None
        """Where `file` is (kept after it is closed at the stop, its records left there)."""
        self.adopted: dict[Path, int | None] = {}
        """Spool files whose records this ledger holds and its open spool does not: those of ledgers gone
        it adopted, and its own former spool once that held their records and could be appended to no
        more (`_drop_spool`). Each is held locked by its descriptor (None: the lock could not be kept), so
        that no ledger starting meanwhile adopts it too; removed once their records are written, or once
        this ledger's spool holds them (`_release_adopted`), or counted unrecorded at the stop."""
        self.left_behind = False
        """Whether the last adoption left spool files for want of room: it adopts again once the buffer has
        drained (FrameLedger.run)."""
        self.adopt_after = 0.0  # monotonic: adoption is not tried again before then
        self.spool_holds_adopted = False
        """Whether the open spool holds records of adopted files since removed: on disk nowhere else."""
        self.spool_failing = False
        """Whether the last spool write failed (warned once until one succeeds)."""
        self.sampled: dict[str, FrameRef] = {}
        """The frames sampled whose records the ledger has not been given yet (in the node's packing, or
        being queued), each with a line in the spool (`sampled_record`); only with a spool folder."""
        self.lines = 0
        """Lines written to the spool file since it was made (`written` starts a new one past the sampled)."""
        self.open_again_at = 0.0
        """Monotonic: a spool that could not be made or written is not made again before then by a record
        or a frame sampled (`journal`), which came a hundred times a second."""

    def adopt(self) -> None:
        """The records ledgers gone left in the spool folder (killed while Postgres was away: their frames
        had no row, and no count as unrecorded), first in line: each frame once, and no more than the
        buffer has room for (`capacity`). A file a live ledger holds locked is its (its own spool, or one
        it adopted).

        Whole files are taken while their records fit in the room left; the first that does not is left
        on disk, unlocked, and no file after it is claimed: the ledger adopts again once its buffer has
        drained (FrameLedger.run, at most every ADOPT_AGAIN_S), and a node starting meanwhile takes what it has room
        for. Taking every file and counting what did not fit as unrecorded, their files removed, lost 13
        of 18 records with Postgres up (a review: nodes on a host share the folder, a power cut during an
        outage kills them all, and the first to restart took every file, the second found none).

        Only a file that alone has more records than the room (one spooled by a node of a larger capacity,
        or a spool that grew with records written while Postgres came and went) is split: taken whole
        it passed the capacity, and left whole it would never fit. Its first records go to a new file this
        ledger holds locked, the rest to another new file left for later, both made under a name no
        ledger claims, synced and then named as spool files (`write_spool_file`), and only then is the
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
        if self.folder is None or not self.folder.is_dir():
            return
        with self.lock:
            seen = {record.frame.frame_id for record in (*self.in_flight, *self.buffer)}
            room = max(0, self.capacity - len(self.buffer))
        read: list[tuple[Path, int | None, list[FrameRecord], str]] = []  # (file, its claim, records, note)
        left_behind = False
        paths = sorted(self.folder.glob(SPOOL_PATTERN))
        self._warn_foreign([path for path in paths if file_tag(path) not in ("", self.tag)])
        for path in (path for path in paths if file_tag(path) in ("", self.tag)):
            room_left = room - sum(len(records) for _, _, records, _ in read)
            if room_left <= 0:
                left_behind = True
                break
            descriptor = claim_file(path)
            if descriptor is None:
                continue
            try:
                every, fresh, notes = read_claimed(descriptor, seen)
            except OSError as error:  # it cannot be read (an I/O error): left to the next node
                log.warning("frames log: %s cannot be read (%s): left as it is", path, error)
                os.close(descriptor)
                continue
            if len(fresh) > room_left:
                left_behind = True
                if read:  # whole files only: this one waits until the buffer has drained
                    os.close(descriptor)
                    break
                split = split_file(self.folder, path, descriptor, fresh[:room_left], every, self.tag)
                if split is None:
                    break
                path, descriptor = split
                notes.append(f"{len(fresh) - room_left} left in a file of their own for later")
                fresh = fresh[:room_left]
            if not file_tag(path):  # an earlier version's: a folder served one chain then, mostly (README)
                notes.append("untagged, spooled by an earlier version: taken as this database's")
            read.append((path, descriptor, fresh, ", ".join(note for note in notes if not note.startswith("0 "))))
            seen.update(record.frame.frame_id for record in fresh)
        left_behind = not self._take(read) or left_behind
        self.left_behind = left_behind
        if left_behind:
            log.info("frames log: spool files in %s left for when this node's buffer has room (or another"
                     " node's)", self.folder)  # fmt: skip

    def _warn_foreign(self, foreign: list[Path]) -> None:
        """Spool files of another database in the folder (another chain's nodes, sharing the default
        folder): left in place, for a node of their database; said once, their count, not their contents."""
        if foreign and not self.foreign_warned:
            log.warning("frames log: %d spool files in %s are another database's (spooled by a node with another"
                        " ALPR_DATABASE_URL): left in place for a node of that database; give each chain its own"
                        " ALPR_LEDGER_SPOOL_DIR", len(foreign), self.folder)  # fmt: skip
            self.foreign_warned = True

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
            if self.file is not None and self.adopted:  # (a ledger spooling already: its spool takes them)
                self.append(taken)
                self._release_adopted()
        return every_one

    def _release_adopted(self) -> None:
        """The spool, just written with every record this ledger holds, holds those of the adopted files:
        it is made durable (the file synced, and the folder, so that a power cut cannot keep the removals
        and lose the file), then the adopted files are removed, and only then unlocked (a ledger that
        locks one after finds it gone: `claim_file`). A kill between leaves records twice, never nowhere.
        Under the lock."""
        if self.file is None or self.folder is None or not self.adopted:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            sync_folder(self.folder)
        except OSError as error:
            if not self.spool_failing:
                log.warning("frames log spool %s cannot be synced (%s): records held in memory only, and in the"
                            " files adopted", self.file_path, error)  # fmt: skip
            self.spool_failing = True
            self._drop_spool()  # the adopted files stay: their records are on disk there
            return
        self.let_go_adopted(remove=True)
        self.spool_holds_adopted = True

    def let_go_adopted(self, remove: bool) -> None:
        """Unlock the adopted files, with `remove` removed first (while locked). Under the lock."""
        for path, descriptor in self.adopted.items():
            if remove:
                with contextlib.suppress(OSError):  # one left holds only records held elsewhere: repeats
                    path.unlink()
            if descriptor is not None:
                with contextlib.suppress(OSError):
                    os.close(descriptor)
        self.adopted = {}

    def append(self, records: list[FrameRecord]) -> None:
        """Append records to the spool file (flushed: a kill of the process leaves them). A spool file
        removed meanwhile (its folder deleted) is made anew with every record held: they were appended to
        a file no one would read, and the node said at its stop that they were kept (a review). Under the lock."""
        if self.file is None or not records:
            return
        if self._spool_gone():
            self.open()  # anew, with every record held, these among them
            return
        try:
            self.file.write("".join(record_line(r) for r in records))
            self.file.flush()
            self.lines += len(records)
            self.spool_failing = False
        except OSError as error:
            if not self.spool_failing:
                log.warning("frames log spool %s: %s: records held in memory only", self.file_path, error)
            self.spool_failing = True
            self.open_again_at = time.monotonic() + SPOOL_RETRY_S
            self._drop_spool()  # its records are all held in memory: a partial file left was adopted by the
            # next node, which wrote rows for frames this one counted unrecorded (a review: 19 counted twice)

    def _spool_gone(self) -> bool:
        """Whether the open spool file is no longer at its path (removed, or its folder). Under the lock."""
        if self.file is None or self.file_path is None:
            return False
        try:
            opened, named = os.fstat(self.file.fileno()), os.stat(self.file_path, follow_symlinks=False)
        except OSError:
            return True
        return opened.st_nlink == 0 or (opened.st_dev, opened.st_ino) != (named.st_dev, named.st_ino)

    def _drop_spool(self) -> None:
        """Close this ledger's own spool file and remove it (its records are all held in memory), adopted
        files left as they are. A spool that holds records of adopted files since removed
        (`spool_holds_adopted`) is kept, locked, among the adopted files: those records are on disk
        nowhere else, and a node killed after would lose them with no count; it goes as they do (written,
        spooled anew, or counted unrecorded at the stop). Under the lock."""
        path, spool = self.file_path, self.file
        keep = path is not None and spool is not None and self.spool_holds_adopted and not self._spool_gone()
        if keep and path is not None and spool is not None:
            claim: int | None = None
            with contextlib.suppress(OSError):
                claim = os.dup(spool.fileno())  # the lock stays while this descriptor is open
            self.adopted[path] = claim
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.close()
            self.file = None
        if path is not None and not keep:
            with contextlib.suppress(OSError):
                path.unlink()
        self.file_path = None
        self.spool_holds_adopted = False

    def journal_sampled(self, ref: FrameRef) -> None:
        """A frame was sampled: a line for it in the spool (made if need be) until its record is made: a
        node killed before leaves the frame to the next, which writes it `lost` where no row has it
        (the packing's frames, a job's just queued). Under the lock."""
        if self.folder is None:
            return
        ref = ref.model_copy(update={"roi": None}) if ref.roi else ref  # (FrameLedger.add: no row holds it)
        self.sampled[ref.frame_id] = ref
        if self.file is None:
            self.open_when_due()  # (its line among what it holds)
        else:
            self.append([sampled_record(ref)])

    def journal(self, made: list[FrameRecord], held: list[FrameRecord]) -> None:
        """Records were made (`made`), of which the buffer took `held` (the rest go unrecorded): the
        frames' sampled lines are superseded, and the records held appended (the spool made if need be).
        Under the lock, the buffer holding them already."""
        for record in made:
            self.sampled.pop(record.frame.frame_id, None)
        if self.folder is None or not held:
            return
        if self.file is None:
            self.open_when_due()  # (they are in the buffer: among what it holds)
        else:
            self.append(held)

    def open_when_due(self) -> None:
        """Make the spool for a record or a frame sampled: unless one could not be made or written lately
        (SPOOL_RETRY_S): tried again for each frame, a full disk cost every frame a failed file. Under the lock."""
        if not self.spool_failing or time.monotonic() >= self.open_again_at:
            self.open()

    def written(self) -> None:
        """Every record held is written (the buffer drained): the spool and the adopted files are removed,
        or, with frames sampled and not yet given their records, the spool is started anew with their
        lines alone (made before the old one is removed: a kill between leaves repeats, which the next
        node drops): spooled from the node's start outside an outage too, it grew without end. Under the
        lock."""
        if not self.sampled or self.file is None:
            if self.file_path is not None or self.adopted:
                self.close(delete=True)
            return
        if self.lines <= len(self.sampled) and not self.adopted:
            return  # (it holds their lines alone)
        self.let_go_adopted(remove=True)  # (their records written)
        self._begin_anew()

    def compact(self) -> None:
        """A write went through with records still held (more came meanwhile, as they do whenever a write
        takes longer than the gap between two jobs: a few milliseconds to Postgres): a spool holding more
        than twice what the ledger holds (plus SPOOL_COMPACT_LINES) is started anew with what it holds.
        Only `written` started it anew, at a buffer found empty after a write, which a busy node with
        Postgres 5 ms away never saw: its spool grew 190 KB/s for ever, the next node wrote every record
        again (a diff review). Under the lock."""
        held = len(self.in_flight) + len(self.buffer) + len(self.sampled)
        if self.file is None or self.lines <= 2 * held + SPOOL_COMPACT_LINES:
            return
        self._begin_anew()  # (it copies the records of adopted files still held, and lets the files go)

    def _begin_anew(self) -> None:
        """A new spool with what the ledger holds, made before the old one is removed (a kill between leaves
        repeats, which the next node drops); the old one goes on where none can be made. Under the lock."""
        old_path, old_file = self.file_path, self.file
        self.file, self.file_path = None, None
        self.open()
        if self.file is None:  # none could be made (a full disk): the old one goes on, holding their lines
            self.file, self.file_path = old_file, old_path
            return
        with contextlib.suppress(OSError):
            if old_path is not None:
                old_path.unlink()
        with contextlib.suppress(OSError):
            old_file.close()

    def open(self) -> None:
        """Spool what the ledger holds (the batch in flight, the buffer, the frames sampled without their
        records) and, until all is written, what comes: at the first record or frame sampled, or when
        Postgres failed a write and no spool could be made before. Under the lock."""
        if self.folder is None:
            return
        if self.file is not None:
            if not self._spool_gone():
                return
            log.warning("frames log spool %s was removed: spooling anew", self.file_path)
            self._drop_spool()
        try:
            make_private_folders(self.folder)
            self.file_path, descriptor = new_spool_file(self.folder, self.tag)
            self.file = os.fdopen(descriptor, "a", encoding="utf-8")
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if not self.spool_failing:
                log.warning("frames log spool in %s cannot be written (%s): records held in memory only",
                            self.folder, error)  # fmt: skip
            self.spool_failing = True
            self.open_again_at = time.monotonic() + SPOOL_RETRY_S
            self._drop_spool()
            return
        self.spool_holds_adopted = False  # (until `_release_adopted`)
        self.lines = 0
        self.append([*self.in_flight, *self.buffer, *map(sampled_record, self.sampled.values())])
        self._release_adopted()  # they were copied in: were the files left, each kill in turn doubled them

    def close(self, delete: bool) -> None:
        """Close the spool file; with `delete`, every record of it and of the adopted files is written:
        they are removed, each before it is unlocked. Under the lock."""
        if delete and self.file_path is not None:
            with contextlib.suppress(OSError):
                self.file_path.unlink()
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None
        if delete:
            self.file_path = None
            self.let_go_adopted(remove=True)

    def adopted_frame_ids(self) -> set[str]:
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
