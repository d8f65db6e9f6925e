"""Plate detector role: the YOLO core (`PlateDetector.detect`, core.py), its weights and runtimes, and the
pool's edge (worker.py) that feeds it detect jobs and hands each batch to OCR and redaction."""
