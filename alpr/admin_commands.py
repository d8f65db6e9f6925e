"""The operator's maintenance commands of the chain: `alpr db upgrade` (the Postgres schema), `alpr db
prune` (plate data past its retention) and `alpr replay` (failed jobs back on their queues; failed
alert deliveries from the alerts log; with --orphans, the frames in the chain no job holds)."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import TYPE_CHECKING

import redis

from alpr.connections import database_pool, reach_frame_store, reach_redis, signed_queue, unchecked_pool
from alpr.deployment_check import check_deployment
from alpr.start_warnings import check_job_key
from common.config import Settings
from common.credentials import escape_controls
from common.errors import ConfigError
from common.queues import STAGES

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg_pool import ConnectionPool

    from common.metrics import Metrics
    from common.retention import Pruned


def db(args: argparse.Namespace, settings: Settings) -> int:
    """`alpr db upgrade` or `alpr db prune` (alpr/arguments.py gives each its own flags)."""
    if args.action == "prune" and args.sqlite_path is not None:
        return prune_sqlite(args, settings)
    if not settings.database_url:
        sqlite = ", or --sqlite FILE to prune `alpr run`'s SQLite log" if args.action == "prune" else ""
        raise ConfigError(f"set ALPR_DATABASE_URL (or --database-url) to the Postgres to {args.action}{sqlite}")
    if args.action == "prune":
        return prune(args, settings)
    if args.grant and args.grant == args.grant_pruner:  # the pruner's grant takes back the workers' rights
        raise ConfigError(f"--grant and --grant-pruner name one role, {args.grant}: give the prune a role of its own")
    return upgrade_schema(args, settings)


def upgrade_schema(args: argparse.Namespace, settings: Settings) -> int:
    """`alpr db upgrade`: the migrations, then --grant's and --grant-pruner's rights, then the audit retention,
    each step waiting its turn (--lock-wait); or, with --dry-run, what it would do. A step that gives up its turn
    says what the steps before it did (migrations applied stay)."""
    from common.grants import grant_to
    from common.pruner_role import grant_pruner
    from common.schema_record import read_record
    from common.schema_upgrade import TurnNotTakenError, newer_schema, upgrade

    pool = unchecked_pool(settings, "upgrade")
    if args.dry_run:
        try:
            print_pending_migrations(pool, args, settings)
        finally:
            pool.close()
        return 0
    try:
        applied = upgrade(pool, args.lock_wait_s)
        kept = f"migrations {applied} were applied and stay" if applied else "no migration was needed"
        after = f"{kept}; the grants and the audit retention not done"
        ahead = newer_schema(read_record(pool, args.lock_wait_s, "alpr db upgrade", after).version)
        step = f"--grant {args.grant}"
        try:
            granted = grant_to(pool, args.grant, args.lock_wait_s) if args.grant else False
            step = f"--grant-pruner {args.grant_pruner}"
            if args.grant_pruner:
                grant_pruner(pool, args.grant_pruner, args.lock_wait_s)
            step = "the audit retention"
            audit_said = set_database_audit_retention(pool, settings, args.lock_wait_s)
        except TurnNotTakenError as held:  # "nothing was changed by this step" hid the migrations applied before it
            raise ConfigError(
                TurnNotTakenError.said_with(
                    held.waited_s, held.holders, f"{kept}; {step} not done, nor what follows it"
                )
            ) from None
    finally:
        pool.close()
    if applied or not ahead:
        print(f"applied migrations {applied}" if applied else "schema already up to date")
    print(audit_said, end="")
    # a newer schema exits 0 all the same: Compose's services wait for `migrate` to succeed, and a release rolled
    # back must start (its roles run on the newer schema, as the earlier release's do during a rolling upgrade)
    if ahead:
        done = "" if applied else "nothing applied; "
        print(f"{ahead}: {done}this release's roles run on it as during a rolling upgrade")
    if granted:
        print(f"role {args.grant} may read and write the tables")
    elif args.grant:  # a release rolled back: granted, ALL TABLES gave the role the newer release's tables
        print(f"role {args.grant} not granted: the schema is newer than this release knows, the newer release's"
              " grants stand (this release's would give the role rights on tables it does not know)")  # fmt: skip
    if args.grant_pruner:
        print(f"role {args.grant_pruner} may read what alpr db prune reads and delete what it deletes, nothing more")
    return 0


def set_database_audit_retention(pool: ConnectionPool, settings: Settings, turn_wait_s: float | None = None) -> str:
    """The audit retention Postgres holds every delete of an audit record to (common/audit_policy.py) set from the
    settings (Settings.audit_days), as the owner: what to say of it, a line where the owner changed it, else "". A
    setting the prune refuses (shorter than the plate data's) leaves it as it was, said on stderr: the prune refuses
    to start, but the chain, whose roles wait on the upgrade (Compose's `migrate`), runs on; so does another role's
    upgrade (not the owner's) whose settings differ from the database's, warned that the owner must run it."""
    from common.audit_policy import NotOwnersToSetError, describe, set_audit_retention

    try:
        days = settings.audit_days()
    except ConfigError as refused:
        print(f"alpr: {refused}: the database's audit retention is left as it was", file=sys.stderr)
        return ""
    try:
        was = set_audit_retention(pool, days, turn_wait_s)
    except NotOwnersToSetError as not_owners:  # the workers' or pruner's upgrade of a current schema: not refused
        print(f"alpr: warning: {not_owners}", file=sys.stderr)
        return ""
    return "" if was is None else f"audit records: {describe(days)} (was: {describe(was)})\n"


def print_pending_migrations(pool: ConnectionPool, args: argparse.Namespace, settings: Settings) -> None:
    """`alpr db upgrade --dry-run`: the migrations an upgrade would apply and the tables each would lock (in
    what mode: the chain's writes, or its reads too, wait for it), read from the schema's record alone, and
    the audit retention it would write to the owner's table (common/audit_policy.py) beside the one the
    database holds; nothing applied, written or granted. Read so, it needs no more than SELECT: a preview
    before a maintenance window. The record's read waits --lock-wait at most for another session's lock on
    it, as the upgrade's does (common/schema_record.py), then gives up naming its holder: it hung without
    limit behind a `LOCK TABLE schema_migrations` (a review)."""
    from common.audit_policy import preview_audit_retention
    from common.grants import check_role_name
    from common.migrations import MIGRATION_LOCKS, MIGRATIONS
    from common.schema_record import read_record
    from common.schema_upgrade import check_server_version, newer_schema

    roles = {flag: role for flag, role in (("--grant", args.grant), ("--grant-pruner", args.grant_pruner)) if role}
    for flag, role in roles.items():
        check_role_name(role, flag)
    check_server_version(pool)  # what the upgrade would refuse
    record = read_record(pool, args.lock_wait_s, "alpr db upgrade --dry-run", "nothing was read or changed")
    pending = [version for version, _ in MIGRATIONS if version not in record.applied]
    ahead = newer_schema(record.version)
    print(f"would apply migrations {pending}" if pending else f"{ahead}; nothing to apply" if ahead else
          "schema already up to date; nothing to apply")  # fmt: skip
    for version in pending:
        if locks := MIGRATION_LOCKS.get(version):
            waiting = ", ".join(f"{table} ({mode})" for table, mode in sorted(locks.items()))
            print(f"  migration {version} locks {waiting}")
    try:
        print(preview_audit_retention(pool, settings.audit_days()))
    except ConfigError as refused:  # the upgrade leaves the database's as it is (set_database_audit_retention)
        print(preview_audit_retention(pool, None, str(refused)))
    for flag, role in roles.items():
        print(f"then {flag} {role}: not granted in a dry run")


def stop_on_signals() -> threading.Event:
    """An event set by the signals that stop an ingest node (alpr/ingest_command.STOP_SIGNALS: SIGTERM,
    SIGINT, SIGHUP, a dropped ssh session's; one ignored, SIGHUP under `nohup`, stays ignored), for a
    prune to stop between two batches."""
    from alpr.ingest_command import on_stop_signals

    stop = threading.Event()
    on_stop_signals(lambda *_: stop.set())
    return stop


def prune(args: argparse.Namespace, settings: Settings) -> int:
    """Delete the alerts past theirs (ALPR_ALERT_RETENTION_DAYS), the reads, sightings and frame records past
    the retention (common/retention.py), the snapshot files of the sightings deleted (`alpr run`'s: a file
    left is named on stderr, and a single prune exits 1) and the audit records past theirs
    (ALPR_AUDIT_RETENTION_DAYS, common/audit_retention.py), once or every --every-h hours; as a role given
    the pruner's rights (common/pruner_role.py) or the owner."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from common.metrics import Metrics
    from common.pruner_role import NOT_GRANTED, require_prune_rights
    from common.retention import PruneContendedError, Pruned, prune_logs

    days, kept = settings.retention_days, kept_without_limit(args)
    alert_days, audit_days = settings.alert_days(), settings.audit_days(retention_named(args))
    if not (days or alert_days or audit_days) and args.every_h is None:
        print(kept)
        return 0
    if args.every_h is not None and not 0 < args.every_h <= 24 * 365:
        raise ConfigError(f"--every-h must be above 0 and at most a year of hours, not {args.every_h:g}")
    pool = unchecked_pool(settings, "prune")
    stop = stop_on_signals()  # a process 1 of a container is not ended by a signal it has no handler for
    metrics = Metrics()
    try:  # and the schema current: refused at the start, in one line, a dry run alike
        require_prune_rights(pool, alerts=bool(alert_days), audit=bool(audit_days))
        if args.every_h is not None:  # a role of its own (Compose's `prune`): watched as the others are
            metrics.serve(settings.metrics_port, settings.metrics_address)  # once ready, as every role
        while not stop.is_set():
            now = datetime.now(UTC)
            round_audit_days = held_audit_days(pool, audit_days)
            cutoff, alerts_before, audit_before = (now - timedelta(days=d) if d else None
                                                   for d in (days, alert_days, round_audit_days))  # fmt: skip
            try:  # kept without limit: each round prunes nothing and ends well (a role that ended at once was
                pruned = (prune_logs(pool, cutoff, args.dry_run, stop, alerts_before, audit_before)  # restarted
                          if days or alert_days or audit_days else Pruned())  # for ever)  # fmt: skip
            except psycopg.errors.InsufficientPrivilege:
                raise ConfigError(NOT_GRANTED) from None  # taken back since the start
            except psycopg.errors.RaiseException as refused:  # the audit retention raised since the round began
                raise ConfigError(
                    f"alpr db prune: Postgres refused a delete ({refused.diag.message_primary}):"
                    " the database's audit retention changed meanwhile? run the prune again"
                ) from None
            except PruneContendedError as error:  # alerts whose deliveries were written all the while
                if args.every_h is None:
                    raise
                print(f"alpr: error: {error}", file=sys.stderr, flush=True)  # no prune_succeeded: watched
                stop.wait(args.every_h * 3600)
                continue
            what = pruned_what(args, (cutoff, days), (alerts_before, alert_days), (audit_before, round_audit_days))
            report_round(pruned, what, kept, args.dry_run, metrics)
            if pruned.stopped:
                return 1
            if args.every_h is None:
                return 1 if pruned.snapshots_left else 0
            stop.wait(args.every_h * 3600)
        return 0  # stopped between rounds (a delete stopped mid-batch is rolled back whole)
    finally:
        pool.close()


def held_audit_days(pool: ConnectionPool, audit_days: float) -> float:
    """The audit retention a prune round deletes past: `audit_days` (the prune's settings; 0: kept, the database
    not read), or the database's where that is longer or without limit (common/audit_policy.py), said on stderr in
    one line: Postgres refuses to delete a record younger (migration 26), and a batch it refused failed the prune."""
    from common.audit_policy import held_to_database, read_audit_retention

    if not audit_days:
        return 0.0
    held, told = held_to_database(audit_days, read_audit_retention(pool), "ALPR_AUDIT_RETENTION_DAYS")
    if told:
        print(f"alpr: {told}", file=sys.stderr, flush=True)
    return held


def retention_named(args: argparse.Namespace) -> str:
    """What gave the plate data's retention: `--older-than-days`, or ALPR_RETENTION_DAYS."""
    return "--older-than-days" if args.retention_days is not None else "ALPR_RETENTION_DAYS"


def kept_without_limit(args: argparse.Namespace) -> str:
    """What a prune says where the retention is 0 (kept without limit), naming what made it so:
    `--older-than-days 0` means what ALPR_RETENTION_DAYS=0 does, and is no setting to be blamed for."""
    return f"{retention_named(args)} is 0: plate data is kept without limit; nothing pruned"


def pruned_what(
    args: argparse.Namespace,
    plate: tuple[datetime | None, float],
    alerts: tuple[datetime | None, float] | None,
    audit: tuple[datetime | None, float],
) -> str | None:
    """What a round prunes, each kind of record by its cutoff (and the days of retention it is), and what it
    keeps without limit (a cutoff of None); None where it prunes nothing (`kept_without_limit` said).
    `alerts` None: a log without them (`alpr run`'s)."""
    kinds = [("what was captured", f"plate data ({retention_named(args)} is 0)", plate)]
    kinds += [("alerts captured", "alerts (ALPR_ALERT_RETENTION_DAYS is 0)", alerts)] if alerts else []
    kinds += [("audit records made", "audit records", audit)]
    parts = [f"{what} before {cut:%Y-%m-%d %H:%M} UTC ({days:g} days)" for what, _, (cut, days) in kinds if cut]
    kept = [kept for _, kept, (cut, _) in kinds if cut is None]
    if not parts:
        return None
    return ", ".join(parts) + (f"; kept without limit: {', '.join(kept)}" if kept else "")


def report_round(pruned: Pruned, what: str | None, kept: str, dry_run: bool, metrics: Metrics) -> None:
    """One round of a prune said and counted: rows deleted (or that would be) of what was `what` (None:
    kept without limit, none: `kept` said), success only for a round run to its end (not one a signal
    stopped between batches)."""
    verb = "would delete" if dry_run else "deleted"
    if pruned.stopped:
        verb = f"stopped by a signal; {verb} so far"
    print(f"{verb} {what}: {pruned}" if what else kept, flush=True)
    report_snapshots_left(pruned)
    if not dry_run:
        for table, rows in pruned.rows.items():
            metrics.pruned_rows.labels(table=table).inc(rows)
        if not pruned.stopped:
            metrics.prune_succeeded.set_to_current_time()


def prune_sqlite(args: argparse.Namespace, settings: Settings) -> int:
    """`alpr run`'s reads and sightings (and their snapshots) past the retention, once: its log was kept
    without limit whatever ALPR_RETENTION_DAYS said. Exits 1 where it left something behind: a snapshot,
    the rows after a stop signal, or the deleted rows' old pages in a write-ahead log another process held
    (where it deleted rows: one that deleted none, a reader holding the log, is a WARNING, exit 0)."""
    from datetime import UTC, datetime, timedelta

    from common.retention import prune_sqlite_log
    from common.sqlite_log import check_run_log

    days, audit_days = settings.retention_days, settings.audit_days(retention_named(args))
    if days == 0:  # and the audit records with it (Settings.audit_days)
        print(kept_without_limit(args))
        return 0
    if args.every_h is not None:
        raise ConfigError("--every-h: an SQLite log is pruned once a call (run it from cron)")
    if not args.sqlite_path.is_file():
        raise ConfigError(f"--sqlite: {args.sqlite_path} is no file: nothing to prune")
    check_run_log(args.sqlite_path)
    if (owner := args.sqlite_path.stat().st_uid) != os.geteuid():  # it names the files the prune deletes
        raise ConfigError(f"--sqlite: {args.sqlite_path} is another user's log (uid {owner}): prune it as that user")
    now = datetime.now(UTC)
    cutoff, audit_before = now - timedelta(days=days), now - timedelta(days=audit_days) if audit_days else None
    stop = stop_on_signals()  # after the batch in hand, its snapshots deleted with it
    pruned = prune_sqlite_log(args.sqlite_path, cutoff, args.dry_run, stop, audit_before=audit_before)
    verb = "would delete" if args.dry_run else "deleted"
    if pruned.stopped:
        verb = f"stopped by a signal; {verb} so far"
    print(f"{verb} {pruned_what(args, (cutoff, days), None, (audit_before, audit_days))}: {pruned}")
    report_snapshots_left(pruned)
    if pruned.old_pages_left:  # what it deleted stays so, but the plates may still be read from that file
        held = escape_controls(pruned.old_pages_left)
        print(f"alpr: error: the deleted rows' old pages may still be read from {held} and {held}-wal: another"
              " process (a running `alpr run`, an export) held the log, so its write-ahead log was not emptied;"
              " run the prune again once `alpr run` is stopped", file=sys.stderr)  # fmt: skip
    return 1 if pruned.snapshots_left or pruned.stopped or pruned.old_pages_left else 0


def report_snapshots_left(pruned: Pruned) -> None:
    """Each snapshot file of a deleted sighting left on disk, with why, on stderr (the prune then exits 1;
    a prune `--every-h` says so each round and goes on)."""
    for left in pruned.snapshots_left:
        print(f"alpr: a deleted sighting's snapshot left on disk: {escape_controls(left)}", file=sys.stderr)


def replay(args: argparse.Namespace, settings: Settings) -> int:
    """Failed jobs of detect, ocr and redact (or of one) back on their queues; failed alert deliveries only
    with `--stage alert` (README: weeks-old hits must not flood dispatch by default)."""
    from common.replay import replay_failed

    if args.orphans and (args.stage or args.max_age_h is not None):
        raise ConfigError(
            "--orphans: frames in no job are queued for detection; give it without --stage or --max-age-h"
        )
    if args.max_age_h is not None and args.stage != "alert":  # it was ignored, silently
        raise ConfigError("--max-age-h: only alert deliveries are replayed by age; give it with --stage alert")
    queues_redis = reach_redis(settings)
    check_job_key(settings, queues_redis, None)
    check_deployment(settings, queues_redis, None)  # warns only
    if args.orphans:
        return replay_orphaned_frames(args, settings, queues_redis)
    if args.stage == "alert":
        return replay_alerts(args, settings, queues_redis)
    stages = [args.stage] if args.stage else list(STAGES)
    report = replay_failed(queues_redis, reach_frame_store(settings, queues_redis), stages, args.dry_run,
                           settings.secret("job_key"))  # fmt: skip
    verb = "would requeue" if args.dry_run else "requeued"
    print(f"{'stage':<8} {verb:>13} {'expired':>8} {'malformed':>9} {'refused':>7}")
    for stage in stages:
        print(f"{stage:<8} {report.requeued[stage]:>13} {report.expired[stage]:>8} {report.malformed[stage]:>9}"
              f" {report.refused[stage]:>7}")  # fmt: skip
    if signed := sum(report.signed.values()):
        print(f"alpr: {signed} failed jobs are signed and were left where they are: set ALPR_JOB_KEY (the key the"
              " workers check jobs by) to replay them", file=sys.stderr)  # fmt: skip
    if other_key := sum(report.other_key.values()):
        print(f"alpr: {other_key} failed jobs are signed with another key and were left where they are: is"
              " ALPR_JOB_KEY the key the workers check jobs by?", file=sys.stderr)  # fmt: skip
    return 1 if signed or other_key else 0


ORPHANS_WINDOW_S = 3600
"""`alpr replay --orphans` looks at the frames captured in the last hour (`alpr status`'s window), or in the last
ALPR_FRAME_TTL_S + ALPR_JOB_TIMEOUT_S where that is longer: older ones' bytes have expired."""


def replay_orphaned_frames(args: argparse.Namespace, settings: Settings, queues_redis: redis.Redis) -> int:
    """`alpr replay --orphans`: the frames in the chain no job holds queued again while their frames are
    stored (common/orphan_replay.py); the rest counted."""
    from common.db import STATUS_SESSION_SETTINGS
    from common.orphan_replay import replay_orphans

    frames = reach_frame_store(settings, queues_redis)
    pool = database_pool(settings, "orphan replay", {"frames": ("SELECT",)}, STATUS_SESSION_SETTINGS)
    try:
        window_s = max(ORPHANS_WINDOW_S, settings.frame_ttl_s + settings.job_timeout_s)
        report = replay_orphans(pool, queues_redis, frames, window_s, frames_per_job=settings.frames_per_job,
                                job_timeout_s=settings.job_timeout_s, job_key=settings.secret("job_key"),
                                dry_run=args.dry_run)  # fmt: skip
    finally:
        pool.close()
    if report.unknown:
        print(f"alpr: frames in no job not counted: {report.unknown}", file=sys.stderr)
        return 1
    if report.unreadable_jobs:
        print(f"alpr: nothing queued: {report.unreadable_jobs:,} jobs of the frames' queues could not be read (gone"
              " since their ids were read, or a record without data no worker has refused yet), and the frames"
              " they may hold would be counted in no job and queued twice; run it again, or see `alpr status`",
              file=sys.stderr)  # fmt: skip
        return 1
    verb = "would requeue" if args.dry_run else "requeued"
    print(f"{'in no job':>9} {verb:>13} {'jobs':>5} {'expired':>8} {'no reference':>12} {'malformed':>9}")
    print(f"{report.orphans:>9} {report.requeued:>13} {report.jobs:>5} {report.expired:>8} {report.unreferenced:>12}"
          f" {report.malformed:>9}")  # fmt: skip
    if not report.all_examined:
        print(f"alpr: the oldest {report.examined:,} frames in chain examined only: run it again once they are"
              " done", file=sys.stderr)  # fmt: skip
    if report.unreferenced:
        print(f"alpr: {report.unreferenced} frames in no job were recorded without their reference (by a release"
              " before migration 23, or from a stopped ingest node's spool, which keeps no region of interest):"
              " the sweep records them lost", file=sys.stderr)  # fmt: skip
    return 0


def replay_alerts(args: argparse.Namespace, settings: Settings, queues_redis: redis.Redis) -> int:
    """Failed and rejected alert deliveries (kept in the alerts log) back to pending, and queued."""
    from common.alert_log import AlertLog
    from common.jobs import alert_job
    from common.queues import enqueue

    pool = database_pool(settings, "alert replay")
    try:
        max_age_s = settings.alert_give_up_s if args.max_age_h is None else args.max_age_h * 3600
        replayed = AlertLog(pool, settings.db_patience_s).replay(max_age_s, args.dry_run)
    finally:
        pool.close()
    if not args.dry_run:
        queue = signed_queue(settings, queues_redis, "alert")
        for alert_id, receiver in replayed:
            enqueue(queue, alert_job(alert_id, receiver, 1), settings.job_timeout_s)
    print(f"alert deliveries {'to requeue' if args.dry_run else 'requeued'}: {len(replayed)}")
    return 0
