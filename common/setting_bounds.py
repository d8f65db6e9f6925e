"""The checks of settings against one another that only some commands make, and the values they give: the
retention a role's keeping is bounded by at its start (the redactor's kept frames, the sighting pool's
memory of passes), the alerts' and the audit's retention `alpr db prune` applies, and the sighting pool's
early-match threshold. Made where used, not in every command's settings (a review: they stopped commands
that never use them). common/config.py's Settings calls these from its methods (`within_retention` calls
`keep_age_cut_to`; the others share their names)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common import defaults
from common.errors import ConfigError
from common.setting_environment import ENV_PREFIX

if TYPE_CHECKING:
    from common.config import Settings


def keep_age_cut_to(settings: Settings, role: str) -> float | None:
    """What `role` may keep of a car under `settings` (Settings.within_retention): the keep age (hours) an
    unset ALPR_KEEP_MAX_AGE_H is cut to, None where nothing is cut. Nothing a role keeps of a car outlives
    the records of it (a retention of 0 keeps them for ever: no bound). The redactor (`redact`) keeping frames
    (blurred at their plates only: the car, its driver's face, the place) deletes them before their records
    are pruned: an ALPR_KEEP_MAX_AGE_H set past ALPR_RETENTION_DAYS is refused (100,000 h kept frames 11 years
    past a 30-day retention: a review); one left unset is cut to the retention (`keep_age_cut_h`: told in the
    redactor's start line). The sighting pool (`sight`) remembers a listed plate's passes for twice
    ALPR_ALERT_REPEAT_S (sighting_worker/passes.prune): one set past half the retention is refused. Checked at
    those roles' start alone: checked in every command's settings, a retention of 1 or 2 days with the default
    keep age (72 h) stopped every command, `alpr db prune` (Compose's prune service sets the retention alone:
    nothing pruned, ever) and `alpr status` among them (a review). The sighting pool's watch-read threshold is
    checked here too, before it reaches any server (`early_match_min_confidence`: one below
    ALPR_OCR_MIN_CONFIDENCE refused)."""
    if role == "sight":
        early_match_min_confidence(settings)  # raises ConfigError where inconsistent
    if settings.retention_days == 0:
        return None
    retention_h = 24 * settings.retention_days
    if (
        role == "sight"
        and "alert_repeat_s" in settings.model_fields_set
        and 2 * settings.alert_repeat_s > retention_h * 3600
    ):
        raise ConfigError(
            f"{ENV_PREFIX}ALERT_REPEAT_S ({settings.alert_repeat_s:g} s) must be at most half of"
            f" {ENV_PREFIX}RETENTION_DAYS ({settings.retention_days:g} days): the sighting pool remembers a listed"
            " plate's passes for twice the repeat window, past the records it would outlive"
        )
    if role != "redact" or settings.keep_frames == "none" or settings.keep_max_age_h <= retention_h:
        return None
    if "keep_max_age_h" in settings.model_fields_set:
        raise ConfigError(
            f"{ENV_PREFIX}KEEP_MAX_AGE_H ({settings.keep_max_age_h:g} h) must be at most {ENV_PREFIX}RETENTION_DAYS"
            f" ({settings.retention_days:g} days = {retention_h:g} h): kept frames (cars, faces and places; only the"
            " plates blurred) would outlive the records that name them; lower it, leave it unset (then it"
            " follows the retention), or raise the retention"
        )
    return retention_h


def alert_days(settings: Settings) -> float:
    """How long `alpr db prune` keeps a watch-list alert (0: without limit): ALPR_ALERT_RETENTION_DAYS, or
    where it is unset ALERT_RETENTION_DAYS (365), but 0 where the plate data is kept without limit
    (ALPR_RETENTION_DAYS or `--older-than-days` 0): a deployment that kept everything found its alerts,
    and the evidence they cite, deleted after a year by an upgrade (a review). A value set applies."""
    if "alert_retention_days" not in settings.model_fields_set and settings.retention_days == 0:
        return 0.0
    return settings.alert_retention_days


def audit_days(settings: Settings, plate_days_named: str = f"{ENV_PREFIX}RETENTION_DAYS") -> float:
    """How long `alpr db prune` keeps the audit records of plate searches and exports (0: without limit):
    ALPR_AUDIT_RETENTION_DAYS, refused (ConfigError) where set shorter than the plate data's retention
    (`plate_days_named`: the setting, or `--older-than-days`, that gave it): the audit is how misuse of
    a search is found, and must outlive the data searched. Unset, it is AUDIT_RETENTION_DAYS (730) or the
    plate data's, the longer: a deployment keeping plate data 1000 days had its prune refuse to start
    after an upgrade, its plate data kept past its retention (a review). Plate data kept without limit
    keeps the audit without limit too. Checked by the prune alone, as `keep_age_cut_to` is by its roles:
    a check in every command's settings would stop the whole chain of a deployment that keeps plate
    data longer."""
    if settings.retention_days == 0 or settings.audit_retention_days == 0:
        return 0.0
    if "audit_retention_days" not in settings.model_fields_set:
        return max(settings.audit_retention_days, settings.retention_days)
    if settings.audit_retention_days < settings.retention_days:
        raise ConfigError(
            f"{ENV_PREFIX}AUDIT_RETENTION_DAYS ({settings.audit_retention_days:g} days) must be 0 (kept) or at least"
            f" {plate_days_named} ({settings.retention_days:g} days): the audit of plate searches and exports is"
            " how misuse of a search is found, so it must outlive the plate data searched"
        )
    return settings.audit_retention_days


def early_match_min_confidence(settings: Settings) -> float:
    """The confidence at which a single read is matched against the watch-lists at once (an early
    alert): ALPR_WATCH_READ_MIN_CONFIDENCE, or where unset WATCH_READ_MIN_CONFIDENCE (0.9) raised to
    ALPR_OCR_MIN_CONFIDENCE when that is higher: an operator raising the trusted-read threshold to cut
    false alerts cuts them on early alerts too. One set below ALPR_OCR_MIN_CONFIDENCE is refused
    (ConfigError): an early alert is raised on one read, a sighting's on its voted plate at that
    threshold, and a read matched at once below it raised an alert (a 0.92 misread, the threshold at
    0.99) that the voted sighting would not have (a review). Refused here, where it is used (the
    sighting pool's start: alpr/wiring.build_sighting_stage), not in every command's settings: `alpr db
    prune`, `alpr export` and `alpr status` exited 2 on it, as they did on a keep age past the retention
    (`keep_age_cut_to`)."""
    early = settings.watch_read_min_confidence
    if early is None:
        return max(defaults.WATCH_READ_MIN_CONFIDENCE, settings.ocr_min_confidence)
    if early < settings.ocr_min_confidence:
        raise ConfigError(
            f"{ENV_PREFIX}WATCH_READ_MIN_CONFIDENCE ({early:g}) must be at least {ENV_PREFIX}OCR_MIN_CONFIDENCE"
            f" ({settings.ocr_min_confidence:g}): a single read the trusted-read threshold refuses would raise an"
            f" alert; raise it too, or leave it unset (it then follows {ENV_PREFIX}OCR_MIN_CONFIDENCE)"
        )
    return early
