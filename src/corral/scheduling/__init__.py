"""Scheduling policies: pure decisions over a read-only view of the world (see policy.py)."""
