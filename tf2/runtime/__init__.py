"""Runtime: files on any filesystem, the run lock, strategies, precision, seeds."""
