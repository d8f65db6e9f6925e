"""A plate and a reason kept off the command line: `ps` (/proc/PID/cmdline) shows every local user each
process's arguments, so `alpr watchlist add KPX4721 --reason "stolen: case 118"` told them which plate
was listed and why (a review). PLATE `-` reads the plate from standard input; `--reason-file FILE`
reads the reason from FILE's one line (`-`: standard input, after the plate when both are read there).
The argument forms still work: on a host of one user they show no one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import InputError
from common.text_files import read_text_file, shown_path

STDIN = "-"
"""The value naming standard input, as PLATE or as --reason-file's FILE."""

MAX_PRIVATE_VALUE_BYTES = 64 * 1024
"""The most read for the plate and reason, from a file or standard input (a reason is at most 200
characters: the bound keeps a device or a log out)."""


def add_reason_flags(parser: argparse.ArgumentParser, why: str) -> None:
    """`--reason R` or `--reason-file FILE` on `parser`, one of the two (`take_private_values` reads the
    file)."""
    reason = parser.add_mutually_exclusive_group(required=True)
    reason.add_argument("--reason", help=f"{why} (on the command line, which every local user can read: ps)")
    reason.add_argument(
        "--reason-file", metavar="FILE",
        help="a file whose one line is the reason, kept off the command line; - reads it from standard input"
        " (after the plate, when PLATE is - too)",
    )  # fmt: skip


PLATE_HELP = (
    "the plate (spaces, - and . are dropped; letters are upper-cased); - reads it from standard input, keeping it"
    " off the command line, which every local user can read (ps)"
)
"""Help of a PLATE argument that may be `-`."""


def take_private_values(args: argparse.Namespace) -> None:
    """Put in `args` the plate and reason given off the command line: `args.plate` of `-` becomes standard
    input's first line, `args.reason` the one line of `args.reason_file` (or of standard input, after the
    plate). A namespace without those attributes is left as it is. InputError when the file or standard
    input does not hold one line per value."""
    from_stdin: list[str] = []
    if getattr(args, "plate", None) == STDIN:
        from_stdin.append("plate")
    reason_file = getattr(args, "reason_file", None)  # argparse lets through --reason or this, not both
    if reason_file == STDIN:
        from_stdin.append("reason")
    elif reason_file is not None:
        args.reason = _file_line(Path(reason_file))
    for name, value in zip(from_stdin, _stdin_lines(from_stdin) if from_stdin else [], strict=True):
        setattr(args, name, value)


def _file_line(path: Path) -> str:
    label = f"--reason-file {shown_path(path)}"
    lines = _lines(read_text_file(path, MAX_PRIVATE_VALUE_BYTES, InputError, label))
    if len(lines) != 1:
        raise InputError(f"{label}: holds {len(lines)} lines, expected one: the reason")
    return lines[0]


def _stdin_lines(names: list[str]) -> list[str]:
    """One line of standard input per name, in order: asked for one by one at a terminal (a prompt on
    stderr), else the whole input, which must hold that many lines that are not blank."""
    wanted = " then ".join(names)
    stream = sys.stdin
    if stream is None or stream.closed:
        raise InputError(f"no standard input to read the {wanted} from")
    try:
        if stream.isatty():
            lines = []
            for name in names:
                print(f"{name}: ", end="", file=sys.stderr, flush=True)
                lines.append(stream.readline(MAX_PRIVATE_VALUE_BYTES).strip())
            given = [line for line in lines if line]
        else:
            text = stream.read(MAX_PRIVATE_VALUE_BYTES + 1)
            if len(text) > MAX_PRIVATE_VALUE_BYTES:
                raise InputError(f"standard input: larger than {MAX_PRIVATE_VALUE_BYTES // 1024} KiB")
            given = _lines(text)
    except (UnicodeDecodeError, ValueError, OSError) as error:
        raise InputError(f"standard input cannot be read for the {wanted}: {type(error).__name__}") from None
    if len(given) != len(names):
        raise InputError(f"standard input holds {len(given)} lines, expected {len(names)}: the {wanted}")
    return given


def _lines(text: str) -> list[str]:
    """The lines of `text` that are not blank, stripped (line ends and a byte-order mark left out)."""
    return [line.strip() for line in text.lstrip("\ufeff").splitlines() if line.strip()]
