"""Defaults of what is kept and for how long: redacted frames on disk, and the plate data, alerts and
audit records `alpr db prune` deletes past their retentions.
Read them as `defaults.NAME` (common/defaults.py), not from this module."""

from __future__ import annotations

from typing import Literal

KEEP_FRAMES: Literal["plates", "all", "none"] = "plates"
"""Which redacted frames the redactor keeps: only those with a detected plate, all, or none."""

KEEP_MAX_AGE_H = 72.0
"""Hours a kept frame stays on disk; the redactor pool deletes older ones (every KEEP_SWEEP_S)."""

RETENTION_DAYS = 30.0
"""How long the plate log keeps reads, sightings and frame records (`alpr db prune`; 0: without limit).
Many cities' and states' rules on plate data set 30 days or less unless a record is evidence (an
alert's reads and sighting are kept)."""

MAX_RETENTION_DAYS = 36500.0
"""The longest retention, ALPR_RETENTION_DAYS or `alpr db prune --older-than-days` (a century)."""

MIN_RETENTION_DAYS = 1.0
"""The shortest retention but 0 (kept): a prune of the last minutes deleted reads the sighting pool had not
grouped yet (no sighting, no alert for them) and frame records still being finished."""

ALERT_RETENTION_DAYS = 365.0
"""How long `alpr db prune` keeps a watch-list alert (its deliveries, and through it the evidence it cites:
its frame's record, the read alerted on, its sighting) after its capture (0: without limit); one whose
delivery is still pending or being sent is kept until it ends. Unset where the plate data is kept without
limit (ALPR_RETENTION_DAYS 0), the alerts are too (Settings.alert_days)."""

AUDIT_RETENTION_DAYS = 730.0
"""How long `alpr db prune` keeps the audit records of plate searches and exports (0: without limit): at
least as long as the plate data searched (ALPR_RETENTION_DAYS), for misuse of a search is found by them;
unset, the plate data's retention where that is longer (Settings.audit_days)."""

KEEP_SWEEP_S = 600
"""How often a redactor worker deletes kept frames older than the age limit."""
