"""Untrusted Markdown made safe: to HTML for the live widgets, and to inert Markdown for the saved bundle.

Model output is untrusted. An ipywidgets ``HTML`` widget assigns ``innerHTML``, so :func:`render_markdown` runs
markdown-it-py with ``html=False`` (raw HTML is escaped: ``<img onerror=...>`` arrives as inert text),
``linkify`` off, and a link validator (:func:`safe_link`) that lets only ``http``, ``https``, ``mailto`` and
scheme-less targets become links. JupyterLab renders the running session's Markdown outputs as trusted (raw
HTML kept), so the final bundle's ``text/markdown`` goes through :func:`safe_markdown`, which escapes every
``<`` outside code instead (DESIGN.md §5).

Pure: markdown-it-py and the standard library only.
"""

from __future__ import annotations

import html
import re
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = [
    "escape_inline_markdown",
    "normalize_newlines",
    "parse_markdown",
    "render_markdown",
    "safe_link",
    "safe_markdown",
]

# Schemes a rendered link may use. Anything else (javascript:, vbscript:, data:, file:, ...) is left as text.
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME_RE = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.\-]*):")
# Control characters and whitespace that browsers strip inside a scheme ("java\tscript:" is javascript:).
_URL_JUNK_RE = re.compile(r"[\x00-\x20\x7f]+")


def safe_link(url: str) -> bool:
    """Return True when ``url`` may become a clickable link or image source.

    Relative URLs and fragments are allowed; absolute URLs only with an ``http``, ``https`` or ``mailto``
    scheme. Browsers ignore tabs, newlines and other control characters inside a scheme, so those are removed
    before the check.
    """
    compact = _URL_JUNK_RE.sub("", url)
    match = _SCHEME_RE.match(compact)
    if match is None:
        # No scheme before the first ":"? A colon later in a relative path ("a/b:c") is harmless only if a
        # "/", "?" or "#" comes first; otherwise the browser would read it as a scheme.
        colon = compact.find(":")
        if colon == -1:
            return True
        return any(sep in compact[:colon] for sep in "/?#")
    return match.group(1).lower() in _SAFE_SCHEMES


def _new_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    builtin_validate = md.validateLink

    def validate(url: str) -> bool:
        return builtin_validate(url) and safe_link(url)

    md.validateLink = validate  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
        # Links open in a new tab and give the target no handle on the notebook page.
        tokens[idx].attrSet("target", "_blank")
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


_MD = _new_markdown()


def render_markdown(text: str) -> str:
    """Render untrusted Markdown to HTML that is safe to assign to ``innerHTML``.

    >>> render_markdown("**hi** <b>there</b>")
    '<p><strong>hi</strong> &lt;b&gt;there&lt;/b&gt;</p>\\n'
    """
    return _MD.render(text)


def parse_markdown(text: str) -> list[Token]:
    """markdown-it's block tokens for ``text``, with the same parser options as :func:`render_markdown`."""
    return _MD.parse(text)


def normalize_newlines(text: str) -> str:
    """CR and CRLF to LF, NUL to U+FFFD, as markdown-it does before it numbers lines (so token line maps
    index into the normalized text)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")


_MD_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def escape_inline_markdown(text: str) -> str:
    """Escape Markdown punctuation so plain text (a footer, an error message) renders literally, on one line."""
    return _MD_INLINE_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


# -- Markdown that stays inert in any renderer ---------------------------------------------------------------
#
# JupyterLab renders the Markdown outputs of the running session as *trusted*, and trusted Markdown keeps raw
# HTML (only untrusted outputs are sanitized): an ``<img onerror=...>`` in the answer would run once the live
# view is replaced by the final bundle. So the bundle's text/markdown is the answer with every ``<`` outside
# code escaped (no renderer can see a tag or an HTML block) and links with unsafe schemes defused, while code
# blocks and code spans stay byte-for-byte (their ``<`` is shown, never parsed).

_AUTOLINK_RE = re.compile(r"<(?:https?|mailto):[^\s<>`]*>", re.IGNORECASE)
_REF_DEF_RE = re.compile(r"^( {0,3})\[([^\]]*)\]:\s*(\S+)")
_INLINE_DEST_RE = re.compile(r"\(\s*<?([^)\s>]*)")


def _code_lines(text: str) -> tuple[set[int], bool]:
    """Line numbers inside fenced or indented code blocks (per markdown-it), and whether a fence is open
    at the end of the text."""
    lines: set[int] = set()
    open_fence = False
    tokens = _MD.parse(text)
    src_lines = text.split("\n")
    for tok in tokens:
        if tok.type in ("fence", "code_block") and tok.map is not None:
            start, end = tok.map
            lines.update(range(start, end))
            if tok.type == "fence":
                closing = src_lines[end - 1].strip() if end - 1 < len(src_lines) else ""
                marker = tok.markup[:1]
                closed = end - start >= 2 and len(closing) >= len(tok.markup) and set(closing) == {marker}
                if not closed and end >= len(src_lines) - (1 if text.endswith("\n") else 0):
                    open_fence = True
    return lines, open_fence


def _unsafe_destination(dest: str) -> bool:
    return not safe_link(html.unescape(dest))


def _escape_inline(line: str) -> str:
    """Escape ``<`` and defuse unsafe links in one line of prose; leave code spans as they are."""
    out: list[str] = []
    i, n = 0, len(line)
    ref = _REF_DEF_RE.match(line)
    if ref and _unsafe_destination(ref.group(3)):
        # A reference definition with an unsafe target: escape its bracket so it is plain text.
        out.append(ref.group(1) + "\\")
        i = len(ref.group(1))
    while i < n:
        ch = line[i]
        if ch == "\\" and i + 1 < n:
            out.append(line[i : i + 2])
            i += 2
        elif ch == "`":
            run = len(line[i:]) - len(line[i:].lstrip("`"))
            close = re.compile(f"(?<!`)`{{{run}}}(?!`)").search(line, i + run)
            if close is None:  # no closing run on this line: literal backticks
                out.append("`" * run)
                i += run
            else:
                out.append(line[i : close.end()])
                i = close.end()
        elif ch == "<":
            auto = _AUTOLINK_RE.match(line, i)
            if auto:
                out.append(auto.group(0))
                i = auto.end()
            else:
                out.append("&lt;")
                i += 1
        elif ch == "]" and line[i + 1 : i + 2] == "(":
            dest = _INLINE_DEST_RE.match(line, i + 1)
            if dest and _unsafe_destination(dest.group(1)):
                out.append("]\\(")  # "\(" is a literal parenthesis: no link
                i += 2
            else:
                out.append(ch)
                i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def safe_markdown(text: str) -> str:
    """The answer as Markdown that renders the same text but can carry no live HTML or ``javascript:`` link.

    Outside code: ``<`` becomes ``&lt;`` (safe ``http``/``mailto`` autolinks are kept) and links or reference
    definitions whose target is not :func:`safe_link` become plain text. Fenced and indented code blocks
    and code spans are unchanged. A fence left open (an interrupted answer) is closed, so what follows
    (the status footer) is not swallowed by the code block.

    >>> safe_markdown('hi <img src=x onerror=alert(1)> `a<b`')
    'hi &lt;img src=x onerror=alert(1)> `a<b`'
    """
    text = normalize_newlines(text)
    code, open_fence = _code_lines(text)
    lines = text.split("\n")
    out = [line if number in code else _escape_inline(line) for number, line in enumerate(lines)]
    result = "\n".join(out)
    if open_fence:
        fence_tokens = [t for t in _MD.parse(text) if t.type == "fence"]
        marker = fence_tokens[-1].markup if fence_tokens else "```"
        result = result.rstrip("\n") + "\n" + marker + "\n"
    return result
