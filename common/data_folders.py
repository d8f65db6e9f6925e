"""The project's folders in the user's data folder ($XDG_DATA_HOME/alpr or ~/.local/share/alpr): the
defaults of the settings that name a folder of this host (the detector weights, the ledger's spool, the
kept frames)."""

from __future__ import annotations

import os
from pathlib import Path


def data_folder(name: str) -> Path:
    """The project's folder `name` in the user's data folder: $XDG_DATA_HOME/alpr/NAME or
    ~/.local/share/alpr/NAME."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "alpr" / name


def default_model_dir() -> Path:
    """Where `alpr setup` puts the detector weights."""
    return data_folder("models")


def default_spool_dir() -> Path:
    """Where ingest nodes spool frame records while Postgres is away."""
    return data_folder("ledger").absolute()


def default_keep_dir() -> Path:
    """Where redactor workers keep frames by default."""
    return data_folder("kept").absolute()
