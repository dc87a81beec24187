"""The sandbox: the production architecture on this machine (PostgreSQL, Redis, N reference API
instances, the Caddy edge) plus a control plane speaking Render's REST API.

Entry points: `lifecycle.up / status / down` (the CLI's), `api_server` (the reference instance),
`supervisor` (the daemon), `control_plane` (the Render-shaped API). Kept import-light on purpose:
every instance process imports this package.
"""
