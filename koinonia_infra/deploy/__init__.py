"""Declaring the deployment: `preview`, `up`, `destroy-instance` and `outputs`, around the
Pulumi engine.

- types.py: steps, plans, reports and the seams' protocols (imported by all of the below)
- engine.py: the thin adapter over Pulumi's Automation API (`PulumiEngine`, `open_stack`)
- outputs.py: stack outputs → deployment descriptor
- up.py: preview and up; deploys.py: waiting for Render deploys; instance_rollout.py: changes
  that redeploy a running instance, applied one instance at a time
- destroy.py: destroy-instance N (the rollback); stackfile.py: the round-trip stack-file edit
- display.py: the live terminal display of an engine operation
- wiring.py: the real seams the CLI hands to the orchestration (tests replace them)

Nothing is imported here, so `import koinonia_infra.deploy.types` stays cheap.
"""
