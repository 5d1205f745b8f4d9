"""Untrusted text (prompts, responses, guidelines) → sanitized HTML.

Two layers: markdown-it-py with raw HTML disabled (``<script>`` in a response becomes visible
text, and its link validator drops ``javascript:``/``vbscript:``/``data:`` URLs), then nh3
(ammonia) with an allow-list of tags, attributes and URL schemes, which would remove anything
the first layer let through. Images are not allowed: an untrusted response must not make the
annotator's browser fetch anything.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset(
    {
        "p",
        "br",
        "hr",
        "strong",
        "em",
        "del",
        "s",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "a",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    }
)
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})

_markdown = MarkdownIt("commonmark", {"html": False, "breaks": True, "typographer": False})
_markdown.enable(["table", "strikethrough"])


def sanitize_html(html: str) -> str:
    """Keep only allow-listed tags/attributes; links get ``rel="noopener noreferrer nofollow"``."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
        strip_comments=True,
    )


@lru_cache(maxsize=4096)
def _render(text: str) -> str:
    return sanitize_html(_markdown.render(text))


def render_markdown(text: str | None) -> SafeString:
    """Markdown from an untrusted author, rendered and sanitized; safe to put in a template."""
    if not text:
        return mark_safe("")
    return mark_safe(_render(text))  # sanitized by nh3 above
