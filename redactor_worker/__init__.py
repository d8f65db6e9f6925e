"""Redactor role: hides plates in the frames that are kept (`redact(frame, boxes)`)."""
