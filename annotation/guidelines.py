"""Guideline Markdown → HTML for the workspace, which inserts it with innerHTML.

Raw HTML in the Markdown is escaped, and the rendered HTML then passes an allow-list (nh3): only
the tags Markdown produces, and links/images only to http(s), mailto or relative URLs, so a
``[x](javascript:…)`` link (which Markdown happily renders) cannot run script for an annotator.
"""
import html

import markdown
import nh3

_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "em", "strong", "code", "pre",
         "blockquote", "a", "img"}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
_URL_SCHEMES = {"http", "https", "mailto"}


def render_guideline(body_markdown: str) -> str:
    rendered = markdown.markdown(html.escape(body_markdown, quote=False), extensions=["sane_lists"])
    return nh3.clean(rendered, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_URL_SCHEMES,
                     link_rel="noopener noreferrer nofollow")
