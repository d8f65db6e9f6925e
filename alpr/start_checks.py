"""Checks at a process's start of what the settings name but cannot check by themselves: that the
detector's CUDA device is there for its backend, and that the redactor can write its keep folder —
each fails at once with one line naming the setting, instead of a quiet fall-back or failing jobs."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from common.errors import ConfigError
from common.private_files import make_private_folders
from common.shared_folders import refuse_open_folder_above
from redactor_worker.kept_frames import is_camera_name, is_day_name


def cuda_devices(backend: str) -> int | None:
    """How many CUDA devices `backend` ('onnx', 'onnx-int8' or 'torch') can run on here: 0 for none (or no
    CUDA build); None where ONNX Runtime has its CUDA provider, which counts no devices before a session."""
    if backend.startswith("onnx"):
        import onnxruntime as ort

        return None if "CUDAExecutionProvider" in ort.get_available_providers() else 0
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def check_device(backend: str, device: str) -> None:
    """ConfigError when `device` is cuda[:N] and `backend` has no such CUDA device (it would run on the
    CPU with a library warning, or fail every job)."""
    if not device.startswith("cuda"):
        return
    if backend == "onnx-int8":
        _refuse(backend, device, "the int8 model runs on the CPU only")
    index = int(device.partition(":")[2] or 0)
    found = cuda_devices(backend)
    if found is not None and index >= found:
        _refuse(backend, device, f"it has {found}" if found else "no CUDA device is available to it")


def check_session_device(backend: str, device: str, session: Any) -> None:
    """ConfigError when an ONNX Runtime `session` asked for `device` (cuda) fell back to the CPU, as it
    does quietly where its CUDA provider finds no device."""
    if device.startswith("cuda") and "CUDAExecutionProvider" not in session.get_providers():
        _refuse(backend, device, "ONNX Runtime could not start its CUDA provider on it")


def _refuse(backend: str, device: str, why: str) -> NoReturn:
    raise ConfigError(
        f"ALPR_DETECTOR_DEVICE: {device} asked for, but {why} (ALPR_DETECTOR_BACKEND={backend}); set"
        " ALPR_DETECTOR_DEVICE=cpu to run on the CPU"
    )


def _only_ours(status: os.stat_result) -> bool:
    """Whether a folder is this process's user's and no one else may write in it."""
    return status.st_uid == os.geteuid() and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def check_keep_dir(keep_dir: Path) -> None:
    """ConfigError when the redactor cannot create `keep_dir` or write a file in it, when it or a camera or
    day folder in it is another user's or writable by others (an audit: a folder of mode 0777 was taken
    as it was, and another local user's camera folder, its day folder swapped for a link in a loop, had
    kept frames land in her folder, out of the sweep's reach), or when a camera or day folder in it is a
    link (the sweep follows none: frames kept through it would never be deleted, so the redactor refuses
    to keep them), or when a folder above it is one others may change (refuse_open_folder_above: they could
    swap the keep folder itself for a link)."""
    refuse_open_folder_above(keep_dir, "kept frames", "ALPR_KEEP_DIR: ")
    try:
        make_private_folders(keep_dir)  # kept frames show cars, faces and places: for the owner only
        refuse_open_folder_above(keep_dir, "kept frames", "ALPR_KEEP_DIR: ", warn=False)  # one made meanwhile
        with tempfile.NamedTemporaryFile(dir=keep_dir, prefix=".alpr-write-check-"):
            pass
        cameras = [c for c in keep_dir.iterdir() if is_camera_name(c.name)]
        linked = [c for c in cameras if c.is_symlink()]
        linked += [d for c in cameras if not c.is_symlink() and c.is_dir() for d in c.iterdir()
                   if is_day_name(d.name) and d.is_symlink()]  # fmt: skip
        folders = [keep_dir, *[c for c in cameras if not c.is_symlink() and c.is_dir()]]
        folders += [d for c in folders[1:] for d in c.iterdir() if is_day_name(d.name) and not d.is_symlink()]
        loose = next((f for f in folders if not _only_ours(f.stat())), None)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"ALPR_KEEP_DIR: the redactor cannot write kept frames to {keep_dir}: {reason}") from None
    if loose is not None:
        raise ConfigError(
            f"ALPR_KEEP_DIR: {loose} is another user's or others may write in it; they could move kept frames"
            " out of the sweep's reach, swap a folder for a link mid-write, or delete them: make it the"
            " redactor's own (chown) and writable by it alone (chmod go-w)"
        )
    if linked:
        raise ConfigError(
            f"ALPR_KEEP_DIR: {linked[0]} is a symbolic link; the sweep of kept frames follows no link, so frames"
            " kept through it would never be deleted: mount the larger disk as ALPR_KEEP_DIR instead"
        )
