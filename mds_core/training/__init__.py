"""Training: the optimisation loop, its schedule, sampling, monitoring, distributed setup and
online adaptation on a live stream."""
