"""`koinonia-infra monitor`: the runbook's Step 8 (watch CPU, memory, latency, errors and the
split per instance; alert on the runbook's thresholds) over Render's metrics, logs and events.

    collect.py   reads the window from the Render API (or the sandbox's control plane)
    rules.py     the alert rules of `koinonia:monitor` and what fired
    render.py    the screen (rich), the Markdown report and the sparklines
    redact.py    secrets out of log lines, one helper for every command that shows logs
"""
