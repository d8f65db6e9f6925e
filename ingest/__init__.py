"""Ingest role: opens camera sources (video files, image folders, stream URLs) and samples frames."""
