"""Dashboard number formatting: a rate with its count and 95 % interval, the same text the
dashboard script (``fmtRateCI`` in dashboard.js) writes, e.g. "82.0 (n=412, 78.0–85.4)"."""
from __future__ import annotations

from django import template
from django.utils.html import format_html

register = template.Library()


def interval_text(lo: float, hi: float, digits: int) -> str:
    """``lo–hi`` with enough decimals that the two ends differ (an interval never reads "100–100")."""
    for d in range(digits, digits + 3):
        a, b = f"{lo:.{d}f}", f"{hi:.{d}f}"
        if a != b:
            return f"{a}–{b}"
    return f"{a}–{b}"


@register.simple_tag
def rate_ci(value, n, ci95, digits: int = 1) -> str:
    """``value <span class="ci">(n=N, lo–hi)</span>``; "n/a" without a value, no interval without one."""
    if value is None:
        return format_html('<span class="muted">n/a</span>')
    text = f"{value:.{digits}f}"
    if not n:
        return text
    detail = f"n={n}, {interval_text(ci95[0], ci95[1], digits)}" if ci95 else f"n={n}"
    return format_html('{} <span class="ci">({})</span>', text, detail)
