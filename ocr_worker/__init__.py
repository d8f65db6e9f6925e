"""OCR role: reads plate crops (`PlateReader.read`) with a chosen engine, then applies plate formats."""
