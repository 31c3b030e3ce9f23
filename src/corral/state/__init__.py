"""The mechanism the simulator and a live cluster share: who holds which GPUs (down to the
GPU indices on each host), where a gang can go, the jobs as growable columns, the checkpoint
model, and the cluster state with its transitions, quota accounting, run ledger and the one
`View` policies read. No clock, no I/O: the mechanism that owns the state supplies `now`.
"""
