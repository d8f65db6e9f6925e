"""deploy/prometheus-rules.yml's rules on outages of Postgres and on alerts left undelivered
(AlprDatabaseUnreachable, AlprFrameRecordsWaiting, AlprAlertsUndelivered) watch metrics the chain exports,
and pass promtool's unit tests (tests/prometheus/outage_rules_test.yml)."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml

from tests.conftest import REPO, unavailable
from tests.test_deploy import exported_metric_names

OUTAGE_RULES = {"AlprDatabaseUnreachable", "AlprFrameRecordsWaiting", "AlprAlertsUndelivered"}


def test_the_outage_rules_watch_exported_metrics_and_pass_their_unit_tests():
    rules = yaml.safe_load((REPO / "deploy" / "prometheus-rules.yml").read_text())
    exprs = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    assert set(exprs) >= OUTAGE_RULES
    named = {m for name in OUTAGE_RULES for m in re.findall(r"\balpr_[a-z_]+", exprs[name])}
    assert named == {"alpr_database_up", "alpr_ledger_unwritten_seconds", "alpr_alert_deliveries_pending"}
    assert named <= exported_metric_names()
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    tested = subprocess.run([promtool, "test", "rules", "outage_rules_test.yml"], cwd=REPO / "tests" / "prometheus",
                            capture_output=True, text=True)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
