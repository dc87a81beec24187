"""`koinonia-infra adopt`: take over the running production without touching it.

core.py finds the live resources and edits the stack file; provider.py models what the engine
and pulumi-render do on import, so the result can be judged before any engine runs."""
