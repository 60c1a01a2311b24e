"""Evaluation: the supervised head on the eval split, and kNN on frozen features."""
