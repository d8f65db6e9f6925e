"""The operator's maintenance commands of the chain: `alpr db upgrade` (the Postgres schema) and
`alpr replay` (failed jobs back on their queues)."""

from __future__ import annotations

import argparse

from alpr.wiring import reach_frame_store, reach_redis
from common.config import Settings
from common.errors import ConfigError
from common.queues import STAGES


def db(args: argparse.Namespace, settings: Settings) -> int:
    from common.db import open_pool, upgrade

    if not settings.database_url:
        raise ConfigError("set ALPR_DATABASE_URL (or --database-url) to the Postgres to upgrade")
    pool = open_pool(settings.database_url, password=settings.secret("database_password"))
    try:
        applied = upgrade(pool)
    finally:
        pool.close()
    print(f"applied migrations {applied}" if applied else "schema already up to date")
    return 0


def replay(args: argparse.Namespace, settings: Settings) -> int:
    from common.replay import replay_failed

    queues_redis = reach_redis(settings)
    stages = [args.stage] if args.stage else list(STAGES)
    report = replay_failed(queues_redis, reach_frame_store(settings, queues_redis), stages, args.dry_run)
    verb = "would requeue" if args.dry_run else "requeued"
    print(f"{'stage':<8} {verb:>13} {'expired':>8} {'malformed':>9}")
    for stage in stages:
        print(f"{stage:<8} {report.requeued[stage]:>13} {report.expired[stage]:>8} {report.malformed[stage]:>9}")
    return 0
