"""Training: the Lightning module and data module, P×K samplers, cross-batch memory,
training health, checkpoints, resume and DDP."""
