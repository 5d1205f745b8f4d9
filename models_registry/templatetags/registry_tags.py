"""Small formatting filters for the registry pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def num(value, digits: int = 3):
    """Numbers to ``digits`` significant figures; None → "–"; strings ("inf") unchanged."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{int(digits)}g}"
    return str(value)


@register.filter
def tiers(value) -> str:
    """A priority ranking (tiers of keys, highest first) as ``a = b > c``."""
    if not value:
        return "–"
    return " > ".join(
        " = ".join(str(k) for k in tier) if isinstance(tier, list | tuple) else str(tier)
        for tier in value
    )


@register.filter
def get(mapping, key):
    """``mapping|get:key`` for keys that are not identifiers (pseudonyms, principle keys)."""
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None


@register.filter
def pct(value) -> str:
    if value is None:
        return "–"
    try:
        return f"{100 * float(value):.1f}%"
    except (TypeError, ValueError):
        return str(value)
