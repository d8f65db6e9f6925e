"""This folder's tests get the `chain` fixture of chain_scenes.py (tests/alert_worker/test_routing.py imports it
from there)."""

from tests.sighting_worker.chain_scenes import chain

__all__ = ["chain"]
