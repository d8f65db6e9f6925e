"""Every default value in one namespace, each with a one-line description (as rq/defaults.py does), kept
by topic in the modules gathered here:

- common/defaults_reading.py: the detector, the OCR engine and recogniser, redaction;
- common/defaults_ingest.py: the ingest nodes (sampling, sources, batching, claims, the ledger, capture);
- common/defaults_frames.py: bounds on a stored frame and a job (lifetime, sizes, pixels, JPEG scans);
- common/defaults_jobs.py: the chain's RQ jobs and workers (retries, timeouts, leases, recovery);
- common/defaults_sightings.py: the sighting pool's grouping and its watch-list matching;
- common/defaults_alerts.py: the alert pool's deliveries;
- common/defaults_retention.py: kept frames and the plate data's, alerts' and audit records' retentions;
- common/defaults_services.py: Postgres, Redis and the metrics server (addresses, timeouts, outages).

Code reads every default as `defaults.NAME` (`from common import defaults`), never from a topic module,
so that one setting of `common.defaults.NAME` (a test's monkeypatch, tests/helpers.WITH_DEFAULTS) reaches
every reader; the one function here reads them so too (in a topic module, its bare names were that
module's, and a patch of `common.defaults` no longer reached it: a review)."""

from __future__ import annotations

from common.defaults_alerts import *  # noqa: F403
from common.defaults_frames import *  # noqa: F403
from common.defaults_ingest import *  # noqa: F403
from common.defaults_jobs import *  # noqa: F403
from common.defaults_reading import *  # noqa: F403
from common.defaults_retention import *  # noqa: F403
from common.defaults_services import *  # noqa: F403
from common.defaults_sightings import *  # noqa: F403


def at_least_a_frame_an_hour(fps: float) -> float:
    """`fps`, or ValueError (a validator's) when under MIN_SAMPLE_FPS."""
    if fps < MIN_SAMPLE_FPS:  # noqa: F405 - gathered above
        raise ValueError(f"at least one frame an hour ({MIN_SAMPLE_FPS:.6f} frames/s), not {fps:g}")  # noqa: F405
    return fps
