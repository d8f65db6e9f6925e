"""The form of a camera cursor's saved state (`CURSOR_STATE_VERSION`, `saved_state`), and the check that
refuses a state saved by a newer sighting worker (`check_state_version`, `NewerCursorStateError`)."""

from __future__ import annotations

from typing import Any

from common.sighting_log import SightingCursor

CURSOR_STATE_VERSION = 2
"""The form of the camera cursor's state this worker saves and reads (its `version`; none: saved before there
was one, in any earlier form, read as before). Raised with every change to the state's form: a worker refuses a
newer one (`NewerCursorStateError`). A worker of the form before each alerted pass kept its reads and tracks
read the new form, dropped what it did not know and saved the rest: beside a newer worker during an upgrade,
a car reading one character off a listed plate was alerted on twice a pass (a review). Version 2 holds the late
tracks open (`late`, sighting_worker/late_tracks.py): a worker of version 1 would drop them, and their reads
would be in no sighting; it refuses the camera instead. A state of version 1 is read as holding none."""

WITHOUT_LATE_VERSION = 1
"""The version of a state that holds no late track (`saved_state`): the form of version 1 exactly, which a
worker of that version reads. Saved as version 2 whatever it held, every cursor was refused by a worker of
version 1 after a rollback: no camera grouped, not one sighting or alert (215 reads in 70 s, a review)."""


class NewerCursorStateError(Exception):
    """A camera's cursor saved by a newer sighting worker (its state's version past CURSOR_STATE_VERSION, or not a
    number): the camera is not grouped here and its cursor not written."""

    def __init__(self, camera_id: str, found: object) -> None:
        self.camera_id, self.found = camera_id, repr(found)[:40]
        super().__init__(
            f"camera {camera_id}: its cursor was saved by a newer sighting worker (state version {self.found};"
            f" this worker knows versions up to {CURSOR_STATE_VERSION}): not grouped here, its cursor left as it is."
            " Run one version of the sighting worker: stop every earlier one before a newer one starts"
        )


def check_state_version(cursor: SightingCursor) -> None:
    """NewerCursorStateError when the cursor's state is of a version this worker does not know."""
    found = cursor.state.get("version", 0)
    if type(found) is not int or found > CURSOR_STATE_VERSION:
        raise NewerCursorStateError(cursor.camera_id, found)


def saved_state(parts: dict[str, Any], late: dict[str, Any] | None) -> dict[str, Any]:
    """The state a cursor is saved with: its `parts` (the tracker, the early scan, the alerted passes) and,
    while late tracks are held (`late`, sighting_worker/late_tracks.py), those tracks, as CURSOR_STATE_VERSION;
    holding none, as WITHOUT_LATE_VERSION, which a worker of that version reads (a rollback groups on)."""
    if late is None:
        return {"version": WITHOUT_LATE_VERSION, **parts}
    return {"version": CURSOR_STATE_VERSION, **parts, "late": late}
