"""The regions of interest an ingest node's ledger (ingest/ledger.py) buffers its records without, one a
camera (`RoiHold`): a frame's ROI is taken out of its record while the record waits to be written (a
256-point polygon made each buffered record ten times its size while Postgres was away) and put back as
its row is written. The pending row keeps the frame's reference (`frame_ref`, migration 23), which `alpr
replay --orphans` queues again: dropped for good, as it was, a frame queued again was detected over the
whole frame, the plates outside the operator's ROI read and logged. A record read from a spool file (its
lines hold no ROI) keeps its ROI `unknown`: its row keeps no reference (common/frame_log.queued_ref)."""

from __future__ import annotations

from dataclasses import replace

from common.frame_log import FrameRecord

Polygon = list[tuple[float, float]]


class RoiHold:
    """Each camera's region of interest, as its records were buffered without it. Taken out by the cameras'
    threads and put back by the ledger's writer: a dict's setdefault and look-up need no lock."""

    def __init__(self) -> None:
        self.rois: dict[str, Polygon] = {}
        """Per camera, the ROI its records were buffered without: a node's cameras are set at its start."""

    def take_out(self, record: FrameRecord) -> FrameRecord:
        """The record as the buffer and the spool hold it: its frame's ROI taken out, `held` here. A frame
        whose ROI is not its camera's first (never seen: a node's cameras are set at its start) keeps it."""
        roi = record.frame.roi
        if not roi or self.rois.setdefault(record.frame.camera_id, roi) != roi:
            return record
        return replace(record, frame=record.frame.model_copy(update={"roi": None}), roi_dropped="held")

    def put_back(self, records: list[FrameRecord]) -> list[FrameRecord]:
        """`records` as their rows are written: each frame's ROI taken out here put back (the camera's one
        polygon, shared by them all); a record adopted from a spool file keeps its ROI `unknown`."""
        return [self.whole(record) if record.roi_dropped == "held" else record for record in records]

    def whole(self, record: FrameRecord) -> FrameRecord:
        """A record whose ROI is held here, with it."""
        roi = self.rois[record.frame.camera_id]
        return replace(record, frame=record.frame.model_copy(update={"roi": roi}), roi_dropped=None)
