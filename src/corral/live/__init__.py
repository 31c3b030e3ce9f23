"""The live control plane: a server over a database, a reconciler that runs the simulator's
policy objects on the shared cluster state, node agents that run real processes, and the
client. Needs the `server` extra."""
