"""Model files (safe save/load) and atomic writes."""
