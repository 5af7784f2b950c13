"""Command-line interface: ``muse <command> ...``. Each command lives in its own module."""
