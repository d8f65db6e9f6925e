"""Plate detector role: a YOLO core (`PlateDetector.detect`) and, later, the worker that feeds it jobs."""
