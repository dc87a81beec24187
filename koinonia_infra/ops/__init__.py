"""Day-2 operations over Render's REST API: `status`, the failover drill and the rolling redeploy.

Pure logic over a `RenderClient`, a traffic seam and a health probe; each returns a report model
(`to_json()`, rich and Markdown rendering in `ops.render`). The CLI lives in `cli/ops.py`.
"""
