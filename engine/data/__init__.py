"""Data sources, long-tail subsets, splits and dataset versions."""
