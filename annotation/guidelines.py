"""Guideline Markdown → HTML for the workspace (raw HTML in guidelines is escaped, not rendered)."""
import html

import markdown


def render_guideline(body_markdown: str) -> str:
    return markdown.markdown(html.escape(body_markdown, quote=False), extensions=["sane_lists"])
