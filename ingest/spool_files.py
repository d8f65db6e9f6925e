"""The ledger spool's files, each on its own, none of a ledger's state (ingest/ledger_spool.py's `Spool`
holds that): a record's line of JSON and a file's lines read back; a spool file made (named only once
whole and synced, or made with a name no file has), claimed (opened and locked: no live ledger's, no other
user's, no link), read, split in two when it alone holds more records than a ledger has room for; the
folder's entries made durable; the parts a split cut short left removed. Each file's name carries the
identity of the database its records are for (`database_tag`): a node adopts only its database's."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path

from common.errors import ConfigError
from common.frame_log import FrameRecord, RoiDropped
from common.jobs import FrameOutcome, FrameRef
from common.private_files import make_private_folders
from common.shared_folders import refuse_shared_folder

log = logging.getLogger(__name__)

SPOOL_PATTERN = "ledger-*.jsonl"
"""The spool files of a spool folder: one per ledger that spooled, `ledger-<tag>-<pid>-<ms>.jsonl` (the
tag: its database's, `database_tag`), or `ledger-<pid>-<ms>.jsonl` (untagged: an earlier version's)."""

TAGGED_NAME = re.compile(r"ledger-(db[0-9a-f]+)-\d+-\d+\.jsonl")
"""A spool file's name that carries its database's tag (its first group)."""

LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
"""Host names of this host's Postgres, one identity (no host: libpq's socket; the same server mostly)."""


def database_tag(url: str | None) -> str:
    """The identity of the database a spool file's records are for, from the configured URL, without
    connecting (the spool is written while Postgres is away): its host, port, database name and, where
    the URL's options set one, search path (two chains may keep their tables in two schemas of one
    database), hashed; never the password, the user only when the URL names no database (libpq's default
    is the user's name). "" without a URL. Chains on one host shared the default spool folder, and one
    chain's node wrote the records another's had spooled into its own database (a review)."""
    if not url:
        return ""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - never a reason not to spool: a URL libpq cannot read names no database
        parts = {"host": url.split("@")[-1]}  # (what follows any user:password@)
    host = str(parts.get("host") or "").lower()
    options = str(parts.get("options") or "")
    search_path = re.search(r"(?:-c\s*|--)search_path=(\S+)", options)
    identity = [
        "localhost" if host in LOCAL_HOSTS else host,
        str(parts.get("port") or "5432"),
        str(parts.get("dbname") or parts.get("user") or ""),
        search_path.group(1) if search_path else "",
    ]
    return "db" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def file_tag(path: Path) -> str:
    """The database tag a spool file's name carries; "" for an untagged one (an earlier version's)."""
    tagged = TAGGED_NAME.fullmatch(path.name)
    return tagged.group(1) if tagged else ""


def spool_name(folder: Path, tag: str, stamp: int) -> Path:
    """A spool file's path in `folder`: this process's, made at `stamp` (ms), for the database `tag`."""
    return folder / f"ledger-{tag + '-' if tag else ''}{os.getpid()}-{stamp}.jsonl"


SPLIT_PART_PREFIX = ".ledger-split-"
"""How the name of a file a split writes begins (`write_spool_file`): a name no ledger adopts, held until
the file is whole and synced and is named as a spool file."""

SPLIT_PART_SUFFIX = ".part"
"""How the name of a file a split writes ends (after SPLIT_PART_PREFIX and a random part)."""


SAMPLED_OUTCOME: FrameOutcome = "lost"
"""The outcome of a spool line that journals a frame sampled and not yet given its record
(`sampled_record`): the ledger gives no frame that outcome (its records are pending, skipped or corrupt),
so the line stands for the frame alone and gives way to the frame's record (`read_claimed`)."""

SAMPLED_DETAIL = "ingest node killed"
"""The detail of a sampled frame's line: written as the frame's row only when its node left no record of
it (killed, SIGKILL or a power cut, before it made one) and no stage wrote one either (`lost` with it:
a stage that finishes the frame after replaces it, as it replaces a sweep's `lost`)."""


def sampled_record(ref: FrameRef) -> FrameRecord:
    """The spool's line for a frame sampled whose record is not yet made (see SAMPLED_OUTCOME)."""
    return FrameRecord(ref, SAMPLED_OUTCOME, SAMPLED_DETAIL)


SAMPLED_MARK = "sampled_only"
"""A field a sampled frame's line holds besides a record's (`record_line`), `true`: no field of a FrameRecord,
so that a node of the release before sampled frames were journalled, whose reader keeps a frame's first
line it can read, counts the line unreadable and takes the frame's record after it. Read as a record, the
line was written as the row of each frame the new node had skipped or recorded (`lost`, `ingest node
killed` over `skipped`: 71 of 71, a review of a rollback). Lines without it (an earlier node's, or a line
of such a frame written before the mark) are read as before: `lost` is a sampled frame's line alone."""


def is_sampled_only(record: FrameRecord) -> bool:
    """Whether a spooled record is a sampled frame's line (`sampled_record`), not the frame's record."""
    return record.outcome == SAMPLED_OUTCOME


def record_line(record: FrameRecord) -> str:
    """One spooled record: a line of JSON (a sampled frame's marked, SAMPLED_MARK). Its `roi_dropped` is
    not written: a node of an earlier release, reading every field of a line as a record's, would count
    every line unreadable (`iter_spool` tells it anew)."""
    fields_ = {field.name: getattr(record, field.name) for field in fields(record) if field.name != "roi_dropped"}
    mark = {SAMPLED_MARK: True} if is_sampled_only(record) else {}
    return json.dumps({**fields_, "frame": record.frame.model_dump(mode="json"), **mark}) + "\n"


def iter_spool(lines: Iterable[str]) -> Iterator[FrameRecord | None]:
    """The records of a spool file's lines, one at a time (a file may hold more than the ledger has room
    for); None for a line that cannot be read (the last one cut short by a kill mid-write, say, or one
    marked a sampled frame's that is not one). A frame with no ROI has its ROI `unknown` (roi_dropped):
    the ledger journals its records without it (FrameLedger.add), and a line of a camera with none reads alike."""
    for line in lines:
        marked = False
        try:
            fields = json.loads(line)
            marked = fields.pop(SAMPLED_MARK, False) is True
            frame = FrameRef.model_validate(fields["frame"])
            dropped: RoiDropped | None = "unknown" if frame.roi is None else None
            record: FrameRecord | None = FrameRecord(**{**fields, "frame": frame, "roi_dropped": dropped})
        except (ValueError, TypeError, KeyError, AttributeError):
            record = None
        yield None if marked and record is not None and not is_sampled_only(record) else record


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


PROBE_PREFIX = ".ledger-probe-"
"""How the name of the file `check_spool_folder` writes begins: a name no ledger adopts or removes."""


def check_spool_folder(folder: Path) -> None:
    """The spool folder made where missing (0700) and a file written, synced and removed in it: one that
    cannot be (a file's path, a folder this user may not write, a read-only mount) stops the node at start.
    It logged a WARNING at its first record and ran on with its records in memory alone: a kill lost them
    all, and a node that sampled for a second exited 0 (a review). A later failure (a full disk) is still
    the spool's WARNING (`Spool.open`): the node runs on, as it did. A folder others may write in, or one
    they may swap (through a folder above it they may write in, or a link of theirs), is refused
    (refuse_shared_folder): the records would be written where they point."""
    what, named = "the frame records held while Postgres is away", "ALPR_LEDGER_SPOOL_DIR: "
    refuse_shared_folder(folder, what, named)
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is not a folder")
        make_private_folders(folder)
        refuse_shared_folder(folder, what, named, warn=False)  # a folder above made meanwhile by another user
        descriptor, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)  # (0600, a name no file had)
        try:
            os.write(descriptor, b"probe\n")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
            os.unlink(probe)
        sync_folder(folder)
    except OSError as error:
        raise ConfigError(
            f"ALPR_LEDGER_SPOOL_DIR ({folder}) cannot be written: {error.strerror or type(error).__name__}; the"
            " node keeps its frame records there until Postgres has them (a kill loses none): name a folder"
            " this user may write"
        ) from None


def new_spool_file(folder: Path, tag: str = "") -> tuple[Path, int]:
    """A spool file made in `folder` (its path, and a descriptor open for appending): a name no file
    has, as a ledger's former spool, kept (`Spool._drop_spool`), may have the name a new one made in the
    same millisecond would, and opened again, its lock refused, it was removed."""
    stamp = int(time.time() * 1000)
    while True:
        path = spool_name(folder, tag, stamp)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW
            return path, os.open(path, flags, 0o600)
        except FileExistsError:
            stamp += 1


def write_spool_file(folder: Path, records: list[FrameRecord], keep_locked: bool, tag: str = "") -> tuple[Path, int]:
    """A new spool file in `folder` holding `records`: written and synced under a name no ledger
    claims (made with O_EXCL), locked meanwhile, and only then linked under a spool file's name (a
    name no file has) and its first name removed. Made under its spool name, it could be claimed by
    another ledger before it was locked, or read before it was whole, and removed by that ledger with
    the records it had not read. Its path and its descriptor: open and locked with `keep_locked`,
    else closed (the returned number then means nothing)."""
    temp, name = "", ""
    descriptor, temp = tempfile.mkstemp(prefix=SPLIT_PART_PREFIX, suffix=SPLIT_PART_SUFFIX, dir=folder)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with open(descriptor, "w", encoding="utf-8", closefd=False) as file:
            file.write("".join(record_line(record) for record in records))
        os.fsync(descriptor)
        stamp = int(time.time() * 1000)
        while True:
            name = str(spool_name(folder, tag, stamp))
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


def claim_file(path: Path) -> int | None:
    """A spool file of a ledger gone, opened and locked (its descriptor), or None: a live ledger's
    (locked), another user's or one others may write (their rows would be taken for ours), a link, or
    one gone once locked (removed by the ledger that held it, its records written or in its spool). A
    split's part is claimed alike before it is removed (`remove_stale_parts`)."""
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


def read_claimed(descriptor: int, seen: set[str]) -> tuple[list[FrameRecord], list[FrameRecord], list[str]]:
    """A claimed spool file's readable records (repeats and all), those of frames not in `seen` (each
    once: a frame's record in place of its sampled line, `is_sampled_only`, wherever each is), and notes
    for the log (repeats, lines that could not be read)."""
    every: list[FrameRecord] = []
    fresh: dict[str, FrameRecord] = {}
    broken = 0
    with open(descriptor, encoding="utf-8", errors="replace", closefd=False) as lines:
        for record in iter_spool(lines):
            if record is None:
                broken += 1
                continue
            every.append(record)
            frame_id = record.frame.frame_id
            if frame_id in seen:
                continue
            if frame_id not in fresh or (is_sampled_only(fresh[frame_id]) and not is_sampled_only(record)):
                fresh[frame_id] = record  # (a dict keeps the place of the frame's first line)
    records = [record for record in every if not is_sampled_only(record)]
    taken, sampled_only = list(fresh.values()), sum(is_sampled_only(record) for record in fresh.values())
    notes = [f"{len(records) - (len(taken) - sampled_only)} repeated", f"{broken} lines unreadable",
             f"{sampled_only} frames sampled and given no record: `lost` where the frames log has no row"]  # fmt: skip
    return every, taken, notes


def split_file(
    folder: Path, path: Path, descriptor: int, first: list[FrameRecord], every: list[FrameRecord], tag: str = ""
) -> tuple[Path, int | None] | None:
    """Split the spool file `path` (claimed: `descriptor`) that alone holds more records than this
    ledger has room for: `first` to a new file held locked (its path and claim are returned), every
    other record of `every` to a second new file left unlocked for later, both synced, and the folder;
    then `path` is removed (still locked) and let go. None when the files cannot be written (a full
    disk): what was made of them is removed, and `path` left whole, unlocked. See `Spool.adopt`."""
    firsts = {record.frame.frame_id for record in first}
    rest = [record for record in every if record.frame.frame_id not in firsts]
    made: list[Path] = []
    try:
        kept, claim = write_spool_file(folder, first, keep_locked=True, tag=tag)
        made.append(kept)
        if rest:
            made.append(write_spool_file(folder, rest, keep_locked=False, tag=tag)[0])
        sync_folder(folder)
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
        sync_folder(folder)
    os.close(descriptor)
    return kept, claim


def remove_stale_parts(folder: Path | None) -> None:
    """Remove the files a split left half made in the spool folder (SPLIT_PART_PREFIX, `write_spool_file`):
    a ledger killed while it split a file left the one it was writing, which no ledger adopts and none
    removed, one more with each such kill. Its records are all on disk elsewhere (the file it split is
    removed only once the split's files are named as spool files, and a part named so already is the
    spool file under a second name). Only this folder's, not its subfolders'; only this user's regular
    files (`claim_file`: a link is not followed, nor removed); a part a live ledger holds locked (writing
    it) is left alone: one it has made but not locked yet, removed, fails its split, the file to split
    left whole."""
    if folder is None or not folder.is_dir():
        return
    removed = 0
    for path in sorted(folder.glob(f"{SPLIT_PART_PREFIX}*{SPLIT_PART_SUFFIX}")):
        descriptor = claim_file(path)
        if descriptor is None:
            continue
        try:
            path.unlink()  # (still locked: see `claim_file`)
            removed += 1
        except OSError as error:
            log.warning("frames log: %s, left by a split cut short, cannot be removed (%s)", path, error)
        finally:
            os.close(descriptor)
    if removed:
        log.info("frames log: %d files a split cut short left in %s removed (their records are in the"
                 " spool files)", removed, folder)  # fmt: skip
