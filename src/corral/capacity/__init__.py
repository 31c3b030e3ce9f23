"""Flexible capacity: services with demand curves, elastic training, and the brokers
that move GPUs between them."""
