"""Which process an ingest node runs in, said so that a node started later can tell whether that process
has ended: an ingest node restarted right after a crash found its cameras still claimed by its dead
predecessor (ingest/claims.py) and was refused for up to 30 s, long enough for systemd's default start
limit to give the unit up (a review).

A process is known by its host name, the kernel's boot id, its pid namespace, its pid and its start
time (in clock ticks since boot). A node may judge another's process only where both run on one boot of
one kernel, in one pid namespace, under one host name: there a pid means the same process to both, and
its start time tells a pid used again (a container's process 1 after a restart, a pid recycled) from the
process recorded. Anywhere else (another host, another container, a system without /proc) nothing is
concluded: a live node elsewhere must not lose its cameras to a guess."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass

from common.redis_json import json_object
from ingest.claim_scripts import NODE_RECORD_BOUND

BOOT_ID = "/proc/sys/kernel/random/boot_id"
"""A random id the kernel draws at each boot: two hosts, or one host's two boots, never share it."""

PID_MAX = 4194304
"""The highest pid Linux gives (PID_MAX_LIMIT on 64 bits): a record naming a pid past it is none of a node's
(2**31 raised OverflowError in os.kill and stopped the node reading it, at every start)."""

ENDED_STATES = ("Z", "X")
"""The states /proc shows of a process that has ended (a zombie not yet reaped by its parent, dead)."""


@dataclass(frozen=True)
class NodeProcess:
    """Where and which process a node runs in; `started_ticks` is field 22 of /proc/PID/stat."""

    host: str
    boot_id: str
    pid_namespace: str
    pid: int
    started_ticks: int

    @classmethod
    def this_process(cls) -> NodeProcess | None:
        """This process, or None where /proc cannot say (not Linux, /proc not mounted)."""
        try:
            with open(BOOT_ID, encoding="ascii") as boot_id:
                boot = boot_id.read().strip()
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            return None
        pid = os.getpid()
        started = started_ticks(pid)
        if started is None:
            return None
        return cls(socket.gethostname(), boot, namespace, pid, started[0])

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> NodeProcess | None:
        """A record another node wrote, or None where there is none or it is not one (a node of an earlier
        version writes none; anyone who can reach Redis may write one: JSON nested past the recursion limit
        stopped the node reading it)."""
        fields = json_object(text, NODE_RECORD_BOUND)
        try:
            process = cls(**fields) if fields is not None else None
        except TypeError:
            return None
        if process is None:
            return None
        typed = (str, str, str, int, int)
        values = (process.host, process.boot_id, process.pid_namespace, process.pid, process.started_ticks)
        if not all(type(value) is kind for value, kind in zip(values, typed, strict=True)):
            return None
        return process if 1 <= process.pid <= PID_MAX else None  # (a pid of 0 or below: a process group to os.kill)

    def ended(self) -> bool:
        """Whether this process, recorded by another node, has verifiably ended, as this process sees it:
        it shares the host name, boot and pid namespace, and its pid is gone, has ended (a zombie) or is
        another process's (started at another time). False wherever that cannot be told."""
        here = NodeProcess.this_process()
        if here is None or (here.host, here.boot_id, here.pid_namespace) != (
            self.host, self.boot_id, self.pid_namespace,
        ):  # fmt: skip
            return False
        found = started_ticks(self.pid)
        if found is None:  # no such process, or one /proc hides (hidepid: another user's)
            return not process_exists(self.pid)
        ticks, state = found
        return state in ENDED_STATES or ticks != self.started_ticks


def process_exists(pid: int) -> bool:
    """Whether a process `pid` exists in this pid namespace, whoever's it is (a signal 0 sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    except OverflowError:  # no pid the kernel gives: nothing is concluded
        return True
    return True


def started_ticks(pid: int) -> tuple[int, str] | None:
    """The start time (clock ticks since boot) and state of process `pid`, or None where there is no such
    process or its record cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so split after its last ")"
    fields = text.rpartition(")")[2].split()
    try:
        return int(fields[19]), fields[0]  # fields 22 (starttime) and 3 (state) of proc(5), counted from 1
    except (IndexError, ValueError):
        return None
