"""Plan a training run: parameters, FLOPs, memory and time per step of a parallel layout,
the run's days, GPU-hours, energy and cost, and the search for the best layout."""
