"""mkdocs hook: the docstrings' Sphinx roles (:func:`x`, :class:`~a.b.C`) become links.

mkdocstrings renders Google-style docstrings as Markdown, where ``:func:`load_model``` would
show the role text. Each role becomes an optional autorefs cross-reference: a link when the
name resolves to an object on the API pages (a full dotted path, ``~`` shows the last part
only), plain code when it does not (a relative name); never a build warning. reST's
``text::`` before a literal block loses its second colon.
"""

from __future__ import annotations

import html
import re

_LITERAL_INTRO = re.compile(r"::</p>")
_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|exc|obj):<code>([^<]+)</code>")


def _autoref(match: re.Match) -> str:
    target = html.unescape(match.group(1)).strip()
    short = target.startswith("~")
    target = target.lstrip("~").lstrip(".")
    shown = target.rsplit(".", 1)[-1] if short else target
    return f'<autoref optional identifier="{html.escape(target)}"><code>{html.escape(shown)}</code></autoref>'


def on_page_content(html_text: str, **kwargs) -> str:
    """Rewrite the roles on every page (before autorefs resolves the cross-references), and
    drop the second colon of reST's ``text::`` that introduces a literal block."""
    return _LITERAL_INTRO.sub(":</p>", _ROLE.sub(_autoref, html_text))
