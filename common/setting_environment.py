"""How the settings are read from the environment: the `ALPR_` prefix, a setting's value read from the file
its `ALPR_X_FILE` variable names (by common/setting_files.py), the variables that are not settings and are
ignored, an unknown `ALPR_` variable refused with the setting it is likely a slip for, and a warning for one
whose prefix is not in capitals. common/config.py's Settings.load validates what this gathers."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection, Mapping

from common.errors import ConfigError
from common.setting_files import JOB_KEY_FILE_TRAILER, read_setting_file

ENV_PREFIX = "ALPR_"

log = logging.getLogger("common.config")  # the name its warnings were told under before this module was split off

COMPOSE_VARIABLES = frozenset({
    "ALPR_CAMERAS_FILE", "ALPR_SECRETS_DIR", "ALPR_RECEIVERS_FILE", "ALPR_ALERT_SECRETS_DIR",  # docker-compose.yml's
    "ALPR_INGEST_MEMORY",
    "ALPR_TESTS_REQUIRE_ALL", "ALPR_TEST_DATABASE_URL", "ALPR_BENCH_DATABASE_URL",  # the tests' and benchmarks'
})  # fmt: skip
"""Variables that are not settings (docker-compose.yml reads some on the host; the tests and benchmarks
others): ignored here, not refused."""

SECRET_SETTINGS = ("redis_password", "database_password", "job_key")
"""The settings that hold a secret: read from a file by their `_FILE` variable, as deployments do."""


def environment_values(environ: Mapping[str, str], fields: Collection[str]) -> dict[str, object]:
    """The values the ALPR_* variables of `environ` give the settings `fields`, by field name (ALPR_X_FILE: the
    value of ALPR_X read from a file, as for secrets); an empty variable is unset. Refused (ConfigError): an
    unknown ALPR_ variable, an empty file, a setting given both ways. Warned of: a variable whose prefix is not
    in capitals (`warn_of_other_cases`)."""
    known = [ENV_PREFIX + field.upper() for field in fields]
    warn_of_other_cases(environ, known)
    values: dict[str, object] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and value != "" and key not in COMPOSE_VARIABLES:
            name = key[len(ENV_PREFIX) :].lower()
            if name.endswith("_file") and name not in fields and name[:-5] in fields:
                name, value = name[:-5], read_setting_file(key, value)
                if name == "job_key":  # an editor's trailing space is no part of a key (passwords are read
                    value = value.rstrip(JOB_KEY_FILE_TRAILER)  # as they are: a server holds those whole)
                if not value:  # as an empty variable is: unset (a password of nothing failed at connect)
                    raise ConfigError(f"{key}: the file it names is empty")
                if environ.get(key[:-5]):
                    raise ConfigError(f"set {key[:-5]} or {key}, not both")
            if name not in fields:
                raise ConfigError(unknown_setting(key, known))
            values[name] = value
    return values


def warn_of_other_cases(environ: Mapping[str, str], known: list[str]) -> None:
    """One WARNING per variable whose prefix is not in capitals (`alpr_sample_fps`) but that names a setting
    (or an `_FILE` variable) once upper-cased: it was ignored without a word, and its operator believed it
    applied. Named, never its value (it may be a secret); not refused (it may be another program's). One
    beside its upper-case twin of the same value says nothing new: not warned of (one that differs is)."""
    names = {*known, *(f"{variable}_FILE" for variable in known)}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) or key.upper() not in names:
            continue
        if not environ.get(key.upper()):  # unset, or empty: taken for unset
            log.warning("%s is not read: settings are read from upper-case variables only; set %s", key, key.upper())
        elif environ[key.upper()] != value:
            log.warning("%s is not read, and differs from %s, which is: settings are read from upper-case"
                        " variables only", key, key.upper())  # fmt: skip


def unknown_setting(variable: str, known: list[str]) -> str:
    """The refusal of an unknown ALPR_ variable: the setting (or secret's `_FILE` variable) it is likely a
    slip for first (the list of every known one, 53 names, hid it), then every known one."""
    files = [f"{ENV_PREFIX}{name.upper()}_FILE" for name in SECRET_SETTINGS]
    close = difflib.get_close_matches(variable, [*known, *files], n=1, cutoff=0.8)
    guess = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown setting {variable}{guess}; known: {', '.join(known)}"
