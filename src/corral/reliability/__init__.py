"""Failures, checkpoints and effective training time: the analytic model (ettr.py) and the
failure processes the simulator draws from (failures.py)."""
