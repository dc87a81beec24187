"""Text from outside (descriptors, stack files, Render API answers, process output) made inert
before it reaches a terminal or a Markdown document.

A service name is data: it must never clear a screen (terminal escape sequences), become a link
or a blinking style (rich markup), or add a `- [x]` line or a fake "**PASSED**" to a sign-off
(newlines and Markdown syntax). Escaping happens on output, whatever validated the value on the
way in, so one forgotten validator is not a hole.

No third-party imports: settings and descriptor validation use it too.
"""

from __future__ import annotations

import re

# C0 controls (ESC, BEL, CR, LF, TAB…), DEL, C1 controls (8-bit CSI is U+009B), and the invisible
# or reordering characters that make displayed text differ from the bytes (bidi overrides and
# isolates: "Trojan Source", CVE-2021-42574; zero-width characters; line/paragraph separators).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}

# CommonMark: any ASCII punctuation may be backslash-escaped, and these are the ones that open
# or close inline syntax (emphasis, code, links, images, HTML, autolinks, entities, tables,
# strikethrough) — https://spec.commonmark.org/0.31.2/#backslash-escapes and GitHub Flavored
# Markdown's tables and strikethrough (https://github.github.com/gfm/).
# An underscore inside a word (`pro_max`) cannot open or close emphasis (CommonMark 6.2, "left-
# and right-flanking"): it stays as is, so plan and key names read naturally.
_MARKDOWN = re.compile(r"([\\`*\[\]<>|~&!#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def has_control(text: str) -> bool:
    """True when `text` holds a character `inert` would rewrite."""
    return _CONTROL.search(text) is not None


def inert(text: str) -> str:
    """`text` on one line with every control or invisible character shown as an escape
    (`\\x1b`, `\\n`, `\\u202e`): safe for a terminal, and what was received stays readable."""
    return _CONTROL.sub(_visible, text)


def inert_lines(text: str) -> str:
    """Like `inert`, but keeps line breaks: for multi-line output the tool itself laid out."""
    return "\n".join(inert(line) for line in text.split("\n"))


def md(text: object) -> str:
    """`text` as literal inline Markdown: one line, no control characters, no syntax.

    Every Markdown writer (verify sign-off, drill and rollout reports, the pull-request comment)
    passes outside text through this, so a name is shown as written and never as structure."""
    return _MARKDOWN.sub(r"\\\1", inert(str(text)))


def md_code(text: object) -> str:
    """`text` inside a Markdown code span: backticks cannot close the span, one line, and a
    `|` cannot end a table cell (GFM splits cells on it even inside code spans)."""
    value = inert(str(text)).replace("`", "'").replace("|", "\\|")
    return f"`{value}`"
