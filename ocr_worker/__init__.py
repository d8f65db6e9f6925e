"""OCR role: reads plate crops (`PlateReader.read_plates(crops, boxes)`, core.py): finds the text line,
recognises it with a chosen engine, ranks readings by plate format and calibrates their confidence."""
