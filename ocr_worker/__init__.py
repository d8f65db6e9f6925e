"""OCR role: reads plate crops (`PlateReader.read_plates(crops, boxes, at_side_edge)`, core.py): finds the
text line, recognises it with a chosen engine, ranks readings by plate format and calibrates their
confidence (capped for a plate the frame's side may cut off)."""
