"""The `alpr` command line and the standalone pipeline, wiring the role cores together."""
