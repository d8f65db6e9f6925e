"""A watch-list entry and the checks of what an operator types or a file holds: the plate as listed and as
read (`normalise_plate`, `PLATE_RE`, what is wrong with one that is not: `plate_fault`), the list name, the
reason, the expiry (`parse_expiry`, with the bounds Python can hold: `NEVER_FROM`, `EARLIEST`), and the
entry itself (`WatchEntry`, its plate's character set for the matching's bounds: `char_set`). Where
entries are kept is common/watchlist.py's; how a read is matched against them, common/watchlist_index.py's."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import MAXYEAR, UTC, datetime

from common.errors import InputError
from common.iso_time import from_iso, period

PLATE_RE = re.compile(r"[A-Z0-9]{1,16}")
LIST_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEFAULT_LIST = "default"
MAX_REASON_CHARS = 200


CHARACTER_BITS = {char: bit for bit, char in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")}
"""A plate character's bit in a character set; any other character shares bit 63."""


def char_set(text: str) -> int:
    """The characters of a text as a 64-bit set: a cheap lower bound of plate_distance."""
    bits = 0
    for char in set(text):
        bits |= 1 << CHARACTER_BITS.get(char, 63)
    return bits


def shown(value: str, limit: int = 40) -> str:
    """`value` quoted and escaped as Python writes it, shortened to `limit` characters: for messages."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def normalise_plate(text: str) -> str:
    """Plate text as listed and as read: upper case, spaces, dashes and dots dropped; anything else
    (another character, empty, over 16 characters) is refused, saying what is wrong without the value
    (`plate_fault`)."""
    plate = re.sub(r"[\s.-]", "", text)
    plate = plate.upper() if plate.isascii() else plate  # upper-cased, ı and ſ became I and S, ß SS, ﬁ FI
    if not PLATE_RE.fullmatch(plate):
        raise InputError(
            f"not a plate: {plate_fault(plate)} (letters A-Z and digits, 1 to 16; spaces, - and . ignored)"
        )
    return plate


def plate_fault(plate: str) -> str:
    """What keeps `plate` (spaces, - and . dropped) from being one, by counts, never its characters: the
    message was shown on stderr (which cron and systemd keep) by `alpr watchlist add/remove -`, `alpr search -`
    and `alpr watchlist import` (a review: "not a plate: 'AB12CDÖ'")."""
    if not plate:
        return "nothing left once spaces, - and . are dropped"
    others = sum(not ("A" <= c <= "Z" or "0" <= c <= "9") for c in plate)
    said = [f"{len(plate)} characters"] + ["more than 16"] * (len(plate) > 16)
    return ", ".join(said + [f"{others} not A-Z or 0-9"] * (others > 0))


NEVER_FROM = datetime(9999, 12, 30, tzinfo=UTC)
"""An expiry at or after this is no expiry: 9999-12-31 is how many systems write "never", and a time
past it (in any zone) cannot be read back into Python: one such row stopped every worker loading the
lists (Postgres keeps years past 9999; Python's datetime does not)."""

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""No expiry before this is taken (year 1 with a time zone ahead of UTC was stored as 1 BC, unreadable)."""


def parse_expiry(text: str) -> datetime | None:
    """An ISO-8601 date or date and time ('' = never); without a time zone it is UTC; kept in UTC. A date
    alone lists the plate through that day: it ends when the next begins (2030-07-01 ended as 1 July
    began, where an operator reads "expires on 1 July" as listed that day), in every form Python reads
    (2030-W27-1 the same; a week alone, 2030-W27, through its Sunday). From NEVER_FROM on: never."""
    if not text.strip():
        return None
    try:
        moment = from_iso(text.strip())
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if moment >= NEVER_FROM:
            return None
        moment = (moment + period(text.strip())).astimezone(UTC)
    except ValueError:
        raise InputError(f"not an ISO-8601 date or time: {shown(text)}") from None
    except OverflowError:  # year 1 ahead of UTC, or the last days of 9999 and a day or week added
        if moment.year == MAXYEAR:
            return None
        raise InputError(f"not an expiry from 1970 on: {shown(text)}") from None
    if moment < EARLIEST:
        raise InputError(f"not an expiry from 1970 on: {shown(text)}")
    return None if moment >= NEVER_FROM else moment


@dataclass(frozen=True)
class WatchEntry:
    """One listed plate (normalised), why it is listed, its list, and when the listing ends (None: never)."""

    plate: str
    reason: str
    list_name: str = DEFAULT_LIST
    expires_at: datetime | None = None
    chars: int = field(init=False, repr=False, compare=False)
    """char_set(plate), computed once."""

    def __post_init__(self) -> None:
        if not PLATE_RE.fullmatch(self.plate):
            raise InputError(f"not a normalised plate: {plate_fault(self.plate)}")
        if not self.reason.strip() or len(self.reason) > MAX_REASON_CHARS or not self.reason.isprintable():
            raise InputError(f"a reason needs 1 to {MAX_REASON_CHARS} printable characters, on one line")
        if not LIST_NAME_RE.fullmatch(self.list_name):
            raise InputError(f"not a list name: {shown(self.list_name)} (A-Z, a-z, 0-9, _ . -; 1 to 64)")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise InputError("an expiry needs a time zone")
        object.__setattr__(self, "chars", char_set(self.plate))

    @classmethod
    def parse(cls, plate: str, reason: str, expires: str = "", list_name: str = "") -> WatchEntry:
        """An entry from text as typed or as in a CSV cell: the plate normalised, '' list = the default."""
        spaced = "".join(" " if unicodedata.category(c) == "Zs" else c for c in reason)  # a no-break space pasted
        return cls(normalise_plate(plate), spaced.strip(), list_name.strip() or DEFAULT_LIST, parse_expiry(expires))

    def expired(self, now_s: float) -> bool:
        return self.expires_at is not None and self.expires_at.timestamp() <= now_s
