"""Builds the role cores from the one Settings object, so every command wires them the same way."""

from __future__ import annotations

from common.config import Settings
from detector_worker.core import DetectorSettings, PlateDetector
from ocr_worker.core import OcrSettings, PlateReader


def build_detector(settings: Settings) -> PlateDetector:
    return PlateDetector(
        DetectorSettings(
            model_dir=settings.model_dir,
            weights=settings.detector_weights,
            backend=settings.detector_backend,
            device=settings.detector_device,
            imgsz=settings.detector_imgsz,
            confidence=settings.detector_confidence,
            batch_size=settings.detector_batch_size,
            threads=settings.detector_threads,
        )
    )


def ocr_settings(settings: Settings, region: str | None = None, calibrated: bool = True) -> OcrSettings:
    return OcrSettings(
        engine=settings.ocr_engine,
        region=region or settings.ocr_region,
        max_candidates=settings.ocr_max_candidates,
        model=settings.ocr_model,
        calibrated=calibrated,
    )


def build_reader(settings: Settings, region: str | None = None, calibrated: bool = True) -> PlateReader:
    """The reader; `calibrated=False` keeps the engine's own confidences (what `alpr calibrate` fits)."""
    return PlateReader(ocr_settings(settings, region, calibrated))
