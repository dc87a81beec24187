"""Secrets out of log lines: the one helper every command that shows a log line uses.

An application's log can carry what must never reach a terminal, a report or a GitHub issue:
a connection string with its password (`postgres://user:pw@host`), an `Authorization: Bearer`
header, `password=…` / `token: …` pairs, or the literal value of a secret we know (the Render
key, the engine's passphrase). Each is replaced by `[secret]`; the line is then made inert
(control characters shown as escapes) and cut to a length a one-line summary can hold.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from koinonia_infra.textsafe import inert

MARKER = "[secret]"
# Environment variables whose values are secrets wherever they appear.
SECRET_ENV_VARS = (
    "RENDER_API_KEY",
    "RENDER_APIKEY",
    "PULUMI_ACCESS_TOKEN",
    "PULUMI_CONFIG_PASSPHRASE",
    "GH_TOKEN",
    "GITHUB_TOKEN",
)
# scheme://user:password@host → keep the user and host, hide the password.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(@)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}")
# key=value, key: value, "key": "value" for keys that name a secret.
_PAIR = re.compile(
    r"""(?ix)
    (["']?[a-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|apikey|authorization)
    [a-z0-9_.-]*["']?\s*[:=]\s*)
    (["']?)([^\s"',;&]+)\2
    """
)


def redact_line(
    text: str,
    *,
    known: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    max_length: int = 300,
) -> str:
    """`text` without secrets, on one inert line of at most `max_length` characters."""
    env = os.environ if env is None else env
    values = [v for v in (*known, *(env.get(k, "") for k in SECRET_ENV_VARS)) if len(v) >= 4]
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MARKER)
    text = _URL_PASSWORD.sub(rf"\1{MARKER}\2", text)
    text = _BEARER.sub(rf"\1 {MARKER}", text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{MARKER}{m.group(2)}", text)
    line = inert(text.strip())
    return line if len(line) <= max_length else line[: max_length - 1] + "…"
