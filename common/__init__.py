"""Shared pieces of every role: defaults, config, the types that cross stages, the plate log."""
