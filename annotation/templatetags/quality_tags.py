"""Number formatting for the quality pages (None → "—", ±inf weights → ±∞)."""

from django import template

register = template.Library()


@register.filter
def pct(value, digits: int = 1) -> str:
    """0.2892 → "28.9%"."""
    if value is None or value == "":
        return "—"
    return f"{100 * float(value):.{int(digits)}f}%"


@register.filter
def num(value, digits: int = 2) -> str:
    """A float with ``digits`` decimals; "inf"/"-inf" → ±∞; None → —."""
    if value is None or value == "":
        return "—"
    if value == "inf":
        return "+∞"
    if value == "-inf":
        return "−∞"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{int(digits)}f}"


@register.filter
def pvalue(value) -> str:
    """p-values: "<0.001" below a thousandth."""
    if value is None:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
