"""Self-contained experiments behind the CLI's ready-made commands."""
