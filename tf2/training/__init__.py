"""Training: the step, its losses and optimizers, the loop, checkpoint state."""
