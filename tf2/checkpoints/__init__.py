"""Checkpoints: formats and paths, object graph, TF1 names, architecture, restore, export."""
