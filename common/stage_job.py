"""The one kind of RQ job the chain runs. RQ calls whatever importable function a job names (and its
callbacks, and sends its webhooks); a `StageJob` calls only the chain's job function with one
payload, and refuses anything else before it is imported: the function, extra arguments, an
instance, callbacks or webhooks a job's data names. Every queue and registry of the chain uses it,
so RQ's own registry cleaning cannot run a callback a crafted job names either. A job hash RQ cannot
read back (a field not as RQ writes it, no data at all) is restored as far as is safe and refused too:
RQ would raise while dequeuing it, and the worker would quit with the job stuck between queues."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from redis import Redis
from rq.exceptions import NoSuchJobError, StopRequested
from rq.job import Job
from rq.utils import decode_redis_hash

from common import defaults
from common.bounded_hash import read_within_bounds

STAGE_JOB_FUNCTION = "alpr.stage"
"""The one function name a job may carry. It is never imported: a StageWorker hands each job a
`JobRun` bound to its stage (common/worker_context.py), and that is what runs."""

PERMANENT = "alpr_permanent"
"""Job meta key: why the job will always fail (never retried, not replayed)."""

REFUSED = "refused: "
"""How PERMANENT begins for a job refused as not one of the chain's (a rejected one's: `rejected: `)."""

SIGNATURE = "alpr_signature"
"""Job meta key: the job's signature with the chain's job key (`job_signature`), when one is set."""

NOT_SIGNED_WITH_KEY = "not signed with the chain's job key (ALPR_JOB_KEY)"
"""Why a job is refused whose signature is missing or made with another key."""


def job_signature(key: str, job_id: str, payload: Any) -> str:
    """HMAC-SHA256 of the job's id and payload (canonical JSON) with `key`: what the roles that share the
    key sign their jobs with, and check them by. A forged redaction job (boxes away from the plate) left
    the plate sharp on disk, and the real job then took that file for one kept by an earlier attempt."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hmac.new(key.encode(), f"{job_id}\n{text}".encode(), hashlib.sha256).hexdigest()


class RefusedJobError(Exception):
    """A job that is not one of the chain's own: it names another function, arguments or callbacks."""


class StageJob(Job):
    """An RQ job that can only call the chain's job function with one payload: anything else a
    job's data names (a function, an instance, callbacks) is refused before it is imported."""

    run: Callable[[Any], Any] | None = None
    """Set by the StageWorker running the job: its stage's handler (a common.worker_context.JobRun)."""

    unreadable: str | None = None
    """Why RQ could not read this job's hash back (`restore`), or None."""

    job_key: str | None = None
    """Set by whoever checks the job (a StageWorker, `alpr replay`): the key it must be signed with."""

    left_in_redis: str | None = None
    """Set by `refresh` just before `restore`: a field it did not read, being over its bound, or None."""

    verified_with: str | None = None
    """The key the job's signature was last found good with (the worker checks a job, then RQ's `func`
    checks it again: the signature of a large job is not computed twice)."""

    def restore(self, raw_data: dict[Any, Any]) -> None:
        """RQ's restore; a hash it cannot read (RQ raises: a date, a timeout or a count that is no
        number, no data at all) becomes a job of its data, origin and meta alone, marked unreadable,
        which is refused like any other job not of ours. So does one whose data is over
        MAX_JOB_DATA_BYTES, compressed or once decompressed (RQ would decompress a zlib bomb whole).
        The retries a hash asks for are held to the chain's own (JOB_RETRIES, no waits between), and its
        TTLs, dependencies and group are the chain's own (as `enqueue` writes them), whatever it says."""
        self.unreadable, self.verified_with = None, None  # read (again): checked afresh
        oversized, self.left_in_redis = self.left_in_redis or oversized_field(raw_data), None
        try:
            if oversized:
                raise ValueError(oversized)
            super().restore(raw_data)
        except StopRequested:
            raise
        except Exception as error:  # NoSuchJobError too: RQ's word for a hash without data
            part = self._readable_part(raw_data)
            if oversized:
                part["data"] = b""
            super().restore(part)
            what = oversized or ("no data" if not part["data"] else f"a field RQ cannot read: {type(error).__name__}")
            self.unreadable = f"unreadable job hash ({what})"
        if not isinstance(self.meta, dict):  # RQ reads any JSON there: a list made every meta write raise
            self.meta = {}
            self.unreadable = self.unreadable or "unreadable job hash (meta that is not a mapping)"
        if self.retries_left is not None and self.retries_left > defaults.JOB_RETRIES:
            self.retries_left = defaults.JOB_RETRIES
        if self.retry_intervals is not None:
            self.retry_intervals = [0]
        self.repeats_left, self.repeat_intervals = None, None  # the chain never repeats a job that succeeded
        # nor takes from a hash what it never sets: dependencies that RQ cannot write back made every later
        # registry cleaning raise (no job a killed worker abandoned came back); a TTL Redis refuses made
        # the worker quit on the job, one below zero left its hash forever
        self._dependency_ids, self.allow_dependency_failures, self.group_id = [], None, None
        self.result_ttl, self.failure_ttl, self.ttl = defaults.RESULT_TTL_S, defaults.FAILURE_TTL_S, None

    def refresh(self) -> None:
        """RQ's refresh, but only the fields RQ's restore reads are fetched, each within its bound, its length
        and value taken in one step (common/bounded_hash.py): a field over it stays in Redis and the job is
        restored without it, unreadable. RQ fetched the whole hash: a forged 400 MB field took 1.3 GB in
        `alpr status` before the data bound was ever checked."""
        found = read_within_bounds(self.connection, self.key, {name: field_bound(name) for name in JOB_HASH_FIELDS})
        over = [name for name in JOB_HASH_FIELDS if name in found.over]
        raw_data = {name.encode(): value for name, value in found.values.items()}
        if not found.exists:
            raise NoSuchJobError(f"No such job: {self.key}")
        self.left_in_redis = f"{over[0]} over {field_bound(over[0])} bytes" if over else None
        self.restore(raw_data)

    @classmethod
    def fetch_many(cls, job_ids: Iterable[str], connection: Redis, serializer: Any = None) -> list[Job | None]:
        """RQ's, each job read as `refresh` reads it (RQ's own fetched every hash whole)."""
        jobs: list[Job | None] = []
        for job_id in job_ids:
            try:
                jobs.append(cls.fetch(job_id, connection=connection, serializer=serializer))
            except NoSuchJobError:
                jobs.append(None)
        return jobs

    def _readable_part(self, raw_data: dict[Any, Any]) -> dict[str, Any]:
        """The fields of a job hash RQ cannot fail on: data (empty when there is none: undecodable),
        an ASCII origin, meta the serializer reads as a mapping."""
        fields = decode_redis_hash(raw_data)
        data, origin, meta = fields.get("data"), fields.get("origin"), fields.get("meta")
        part: dict[str, Any] = {"data": data if isinstance(data, bytes) else b""}
        if isinstance(origin, bytes) and origin.isascii():
            part["origin"] = origin
        with contextlib.suppress(Exception):  # meta the serializer cannot read either is left out
            if meta and isinstance(self.serializer.loads(meta), dict):
                part["meta"] = meta
        return part

    def mark_permanent(self, reason: str) -> None:
        """Mark the job as one that will always fail: not retried, not replayed (saved at once, as RQ's
        failure handling does not save meta), and kept in the failed registry for LEFT_JOB_TTL_S only (RQ's
        failure handling, which follows, reads `failure_ttl`). Meta RQ kept unread (raw bytes) is replaced."""
        self.failure_ttl = defaults.LEFT_JOB_TTL_S
        self.meta[PERMANENT] = reason[:300]
        try:
            self.save_meta()
        except (TypeError, ValueError):  # the serializer cannot write back what it could not read
            self.meta = {PERMANENT: reason[:300]}
            self.save_meta()

    def refusal(self) -> str | None:
        """Why this job is not one of ours, or None."""
        if self.unreadable:
            return self.unreadable
        try:
            return self._refusal()
        except StopRequested:  # a stop signal, not the job's fault: let the worker stop
            raise
        except Exception:  # data RQ cannot even decode (wrong shape, not JSON)
            return "undecodable job data"

    def _refusal(self) -> str | None:
        if self.func_name != STAGE_JOB_FUNCTION:
            return f"function {str(self.func_name)[:80]!r} is not {STAGE_JOB_FUNCTION}"
        if not isinstance(self.args, list | tuple) or len(self.args) != 1 or self.kwargs != {}:
            return "a stage job takes exactly one payload argument"  # kwargs [] or null got past, RQ raised
        callbacks = (self._success_callback_name, self._failure_callback_name, self._stopped_callback_name)
        if any(callbacks):
            return "stage jobs carry no callbacks"
        if self.webhooks:
            return "stage jobs carry no webhooks"
        if self.instance is not None:
            return "stage jobs call no instance method"
        if self.job_key is not None and self.job_key != self.verified_with:
            signature = self.meta.get(SIGNATURE)
            expected = job_signature(self.job_key, self.id, self.args[0])
            if not isinstance(signature, str) or not hmac.compare_digest(signature.encode(), expected.encode()):
                return NOT_SIGNED_WITH_KEY
            self.verified_with = self.job_key
        return None

    def sign(self, key: str | None) -> None:
        """Sign the job's payload as it now is (meta, written when the job is next saved)."""
        if key is not None:
            self.meta[SIGNATURE] = job_signature(key, self.id, self.args[0])
            self.verified_with = key

    @property
    def func(self) -> Any:
        if reason := self.refusal():
            self.mark_permanent(REFUSED + reason)  # replay and retries must see it
            raise RefusedJobError(reason)
        if self.run is None:
            raise RuntimeError("alpr jobs run only inside `alpr worker STAGE` (a StageWorker)")
        return self.run

    @property
    def should_retry(self) -> bool:
        return PERMANENT not in self.meta and bool(super().should_retry)

    @property
    def success_callback(self) -> Any:
        return None

    @property
    def failure_callback(self) -> Any:
        return None

    @property
    def stopped_callback(self) -> Any:
        return None

    def send_webhooks(self, *args: Any, **kwargs: Any) -> None:
        """Never: a job's webhooks would make workers send requests a job's author chose."""


BOUNDED_FIELDS = ("data", "exc_info")
"""The fields of a job hash RQ's restore decompresses (zlib), each held to MAX_JOB_DATA_BYTES."""

JOB_HASH_FIELDS = (
    "allow_dependency_failures", "created_at", "data", "dependency_id", "dependency_ids", "description", "ended_at",
    "enqueue_at_front", "enqueue_at_front_on_retry", "enqueued_at", "exc_info", "failure_callback_name",
    "failure_callback_timeout", "failure_ttl", "group_id", "last_heartbeat", "meta", "number_of_retries", "origin",
    "repeat_intervals", "repeats_left", "result", "result_ttl", "retries_left", "retry_intervals", "started_at",
    "status", "stopped_callback_name", "stopped_callback_timeout", "success_callback_name",
    "success_callback_timeout", "timeout", "ttl", "webhooks", "worker_name",
)  # fmt: skip
"""The fields of a job hash RQ's restore reads (tests/common/test_stage_job.py checks this against RQ's
code): `StageJob.refresh` fetches these alone."""

MAX_JOB_FIELD_BYTES = 64 * 1024
"""Most bytes any other field of a job hash may hold (the chain writes at most a few hundred: meta with
a signature and a reason, a description, dates)."""


def field_bound(name: str) -> int:
    """Most bytes the job hash field `name` may hold to be read: MAX_JOB_DATA_BYTES for data, exc_info
    and a result, MAX_JOB_FIELD_BYTES for the rest."""
    return defaults.MAX_JOB_DATA_BYTES if name in (*BOUNDED_FIELDS, "result") else MAX_JOB_FIELD_BYTES


def oversized_field(raw_data: dict[Any, Any]) -> str | None:
    """Why RQ must not restore this job hash: a field it decompresses (data, exc_info) over
    MAX_JOB_DATA_BYTES, compressed or once decompressed (checked here with a bound; RQ's one
    `zlib.decompress` then gives exactly what was checked, a second layer inside staying compressed);
    None when every one fits. Data that is not zlib is what RQ reads raw, held to the bound as it is."""
    for name in BOUNDED_FIELDS:
        value = next((v for k, v in raw_data.items() if k in (name, name.encode())), None)
        if not isinstance(value, bytes):
            continue
        if len(value) > defaults.MAX_JOB_DATA_BYTES:
            return f"{name} over {defaults.MAX_JOB_DATA_BYTES} bytes"
        inflate = zlib.decompressobj()
        try:
            plain = inflate.decompress(value, defaults.MAX_JOB_DATA_BYTES + 1)
        except zlib.error:
            continue
        if len(plain) > defaults.MAX_JOB_DATA_BYTES or inflate.unconsumed_tail:
            return f"{name} decompresses to over {defaults.MAX_JOB_DATA_BYTES} bytes"
    return None
