"""The `alpr` command: its command line read (alpr/arguments.py), its settings loaded with the flags over
them, and the subcommand run (alpr/commands.py, or the chain's module in CHAIN_COMMANDS). Bad input and bad
settings end with a one-line message and a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from alpr.arguments import build_parser
from common.config import Settings
from common.credentials import install_log_masking, mask_url
from common.errors import AlprError, ConfigError
from common.private_files import forbid_core_dumps

EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141
"""Exit status when the reader of the output went away (a pipe into `head`): 128 + SIGPIPE, as a shell
tool killed by the signal ends."""

SETTING_FLAGS = (
    "model_dir",
    "ocr_engine",
    "ocr_model",
    "ocr_region",
    "detector_backend",
    "detector_device",
    "detector_half",
    "detector_imgsz",
    "detector_weights",
    "database_url",
    "sqlite_path",
    "sample_fps",
    "redis_url",
    "metrics_port",
    "retention_days",
)

CHAIN_COMMANDS = {
    "ingest": "alpr.ingest_command",
    "worker": "alpr.worker_command",
    "db": "alpr.admin_commands",
    "replay": "alpr.admin_commands",
    "status": "alpr.status",
    "watchlist": "alpr.watchlist_command",
    "search": "alpr.search_command",
}
"""The module of each subcommand of the distributed chain; the rest are in alpr/commands.py."""

PROJECT_PACKAGES = frozenset(
    ("alpr", "common", "ingest", "detector_worker", "ocr_worker", "redactor_worker", "sighting_worker", "alert_worker")
)
"""The project's packages: an exception class defined in one is raised on purpose, with a message for
the operator (DatabaseWriteError, a refused job), never a bug's traceback."""


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse._SubParsersAction]:
    """A parser's subcommand groups (argparse keeps its subcommands' parsers only in its actions)."""
    return [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]


def setting_flag_names(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Each setting a flag of `command` gives -> that flag as typed (`sample_fps` -> `--fps`)."""
    names: dict[str, str] = {}
    parsers = [sub.choices[command] for sub in _subcommands(parser) if command in sub.choices]
    while parsers:  # the command's own flags, and those of its subcommands (`alpr watchlist list`)
        current = parsers.pop()
        parsers += [choice for sub in _subcommands(current) for choice in sub.choices.values()]
        for option in current._actions:
            if option.dest in SETTING_FLAGS and option.option_strings:
                names[option.dest] = max(option.option_strings, key=len)
    for option in parser._actions:  # flags of `alpr` itself
        if option.dest in SETTING_FLAGS and option.option_strings:
            names.setdefault(option.dest, max(option.option_strings, key=len))
    return names


def named_log(args: argparse.Namespace, settings: Settings) -> Settings:
    """The settings with the log a command's flags name: `--sqlite FILE` is that file though
    ALPR_DATABASE_URL is set (the chain's variable, exported in the operator's shell, had `alpr export
    --sqlite demo.sqlite` write the whole city's log to the CSV); with --database-url too, which is meant
    is unclear: ConfigError."""
    if getattr(args, "sqlite_path", None) is None or not settings.database_url:
        return settings
    if getattr(args, "database_url", None) is not None:
        raise ConfigError("--sqlite and --database-url name two logs: give one")
    return settings.model_copy(update={"database_url": None})


def one_line_error(error: Exception, database_url: str | None = None) -> str | None:
    """The `alpr: error:` line for an error the operator can act on: one of the project's own, a
    database's or Redis's (down, refusing: a read-only monitoring user's `alpr status` printed a
    47-line traceback), an OS error (a full disk); None for any other (a bug: its traceback). A right the
    database role lacks names the role `database_url` logs in as, and how to mend it."""
    from common.db_rights import rights_refused

    if refused := rights_refused(error, database_url):
        return f"alpr: error: {mask_url(refused)}"
    module = type(error).__module__
    if (
        module.split(".")[0] in PROJECT_PACKAGES
        or module.startswith(("psycopg", "sqlite3", "redis."))
        or isinstance(error, OSError)
    ):
        first_line = (str(error).strip().splitlines() or [""])[0]
        return f"alpr: error: {type(error).__name__}: {mask_url(first_line)}"
    return None


def exit_on_terminate(hangup: bool = True) -> None:
    """SIGTERM (`kill`, `timeout`, a container stopped) and, with `hangup`, SIGHUP (its terminal gone) end
    the command as an exception does, so what it was writing is cleaned up: their default killed the
    process outright, and an export stopped so left its hidden partial copy of the log (118,077 rows)
    beside the file for good. A signal ignored (SIGHUP under `nohup`) stays so. Roles that stop on SIGTERM
    in their own way (workers, ingest nodes, `alpr run`) put their handlers in its place; workers keep
    SIGHUP's default, as RQ does (as an exception it failed a worker's job in hand: a review); an ingest
    node stops on it as on SIGTERM (alpr/ingest_command.STOP_SIGNALS)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP) if hangup else (signal.SIGTERM,):
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, lambda received, _: sys.exit(128 + received))


OPENCV_LOG_LEVELS = {
    "SILENT": 0, "OFF": 0, "DISABLED": 0, "S": 0, "0": 0, "FATAL": 1, "F": 1, "1": 1, "ERROR": 2, "E": 2, "2": 2,
    "WARNING": 3, "WARN": 3, "W": 3, "3": 3, "INFO": 4, "I": 4, "4": 4, "DEBUG": 5, "D": 5, "5": 5,
    "VERBOSE": 6, "V": 6, "6": 6,
}  # fmt: skip
"""OPENCV_LOG_LEVEL's values as OpenCV reads them (names, their short forms, numbers), by its numbering."""


def quiet_opencv(level_name: str) -> None:
    """OpenCV's own log at `level_name` (OPENCV_LOG_LEVEL's), set now: OpenCV reads the variable once."""
    import cv2

    cv2.utils.logging.setLogLevel(OPENCV_LOG_LEVELS.get(level_name.upper(), OPENCV_LOG_LEVELS["ERROR"]))


def main(argv: Sequence[str] | None = None) -> int:
    forbid_core_dumps()  # every role decodes frames: a crash's core file held them, plates unblurred
    parser = build_parser()
    args = parser.parse_args(argv)
    exit_on_terminate(hangup=args.command not in ("worker", "ingest"))
    # FFmpeg and OpenCV print their own warnings for bad input; our one-line errors say it better. OpenCV
    # read its variable when imported (before main): its warning came before every error line (a review).
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    quiet_opencv(os.environ["OPENCV_LOG_LEVEL"])
    if isinstance(sys.stdout, io.TextIOWrapper):  # a file name of other bytes than UTF-8, printed, ended the
        sys.stdout.reconfigure(errors="backslashreplace")  # run with a traceback: shown escaped, as on stderr
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    install_log_masking()  # no password of a camera, Redis or Postgres URL reaches a log line
    settings: Settings | None = None
    try:
        overrides = {k: getattr(args, k) for k in SETTING_FLAGS if hasattr(args, k)}
        settings = named_log(args, Settings.load(flag_names=setting_flag_names(parser, args.command), **overrides))
        commands = importlib.import_module(CHAIN_COMMANDS.get(args.command, "alpr.commands"))
        return int(getattr(commands, args.command.replace("-", "_"))(args, settings))
    except AlprError as error:
        print(f"alpr: error: {mask_url(str(error))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("alpr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `alpr status | head -1`: the reader has what it wanted; no error, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush has nowhere to fail
        return EXIT_BROKEN_PIPE
    except Exception as error:  # a database that is down, a disk that is full: one line, not a traceback
        if line := one_line_error(error, settings.database_url if settings else None):
            print(line, file=sys.stderr)
            return EXIT_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
