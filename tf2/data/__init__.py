"""Data: dataset builders, the input pipeline, augmentations, label subsets."""
