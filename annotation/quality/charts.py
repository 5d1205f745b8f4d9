"""Server-made SVG charts for the quality pages (matplotlib, Agg, no pyplot state).

Every function returns an ``<svg>…</svg>`` string (prolog stripped) ready to inline; text stays
text (``svg.fonttype = none``) and ids are deterministic (``svg.hashsalt``). Labels are our own
strings (usernames, principle keys), escaped by matplotlib's SVG writer.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

from matplotlib import ticker
from matplotlib.figure import Figure

ACCENT = "#2f5bd3"
MUTED = "#5b6478"
CATEGORY_COLORS = {"consensus": "#3b8b5a", "conflict": "#c2563a", "indifference": "#b9bfcc"}
STYLE_ELEMENT = re.compile(r"<style[^>]*>.*?</style>", re.DOTALL)
RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "quality",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#98a0b3",
    "axes.labelcolor": "#1d2330",
    "xtick.color": MUTED,
    "ytick.color": MUTED,
}


def _svg(fig: Figure) -> str:
    """The figure as inline SVG, without matplotlib's ``<style>`` element (the page's CSP admits
    only nonced style elements; its rule is in ``quality/_style.html``)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return STYLE_ELEMENT.sub("", text[text.index("<svg") :], count=1)


def category_bar(categories: dict[str, int]) -> str:
    """One horizontal stacked bar: consensus / conflict / indifference shares."""
    total = sum(categories.values()) or 1
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7.5, 0.9))
        ax = fig.add_subplot()
        left = 0.0
        for name, count in categories.items():
            share = count / total
            ax.barh(0, share, left=left, color=CATEGORY_COLORS.get(name, ACCENT), height=0.6)
            if share > 0.06:
                ax.text(
                    left + share / 2,
                    0,
                    f"{name} {100 * share:.1f}%",
                    ha="center",
                    va="center",
                    color="white",
                    fontsize=9,
                )
            left += share
        ax.set_xlim(0, 1)
        ax.set_axis_off()
        return _svg(fig)


def interval_chart(
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    *,
    xlabel: str,
    reference: float | None = None,
) -> str:
    """Point estimates with intervals, one row per label: ``(label, value, low, high)``."""
    rows = [r for r in rows if r[1] is not None]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7.5, 0.35 * max(len(rows), 1) + 0.8))
        ax = fig.add_subplot()
        for y, (_, value, low, high) in enumerate(rows):
            if low is not None and high is not None:
                ax.plot([low, high], [y, y], color=ACCENT, linewidth=2, alpha=0.5)
            ax.plot([value], [y], "o", color=ACCENT, markersize=5)
        if reference is not None:
            ax.axvline(reference, color=MUTED, linestyle=":", linewidth=1)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, max([1e-9] + [r[3] or r[1] for r in rows]) * 1.1)
        ax.xaxis.set_major_formatter(ticker.PercentFormatter(1.0))
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
        return _svg(fig)


def time_chart(
    labels: Sequence[str],
    series: dict[str, Sequence[float | None]],
    *,
    ylabel: str = "",
) -> str:
    """Lines over time buckets (None = gap)."""
    colors = [ACCENT, "#c2563a", "#3b8b5a"]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7.5, 2.4))
        ax = fig.add_subplot()
        x = list(range(len(labels)))
        for i, (name, values) in enumerate(series.items()):
            ys = [float("nan") if v is None else v for v in values]
            ax.plot(x, ys, marker="o", markersize=3, label=name, color=colors[i % len(colors)])
        step = max(1, len(labels) // 8)
        ax.set_xticks(x[::step], list(labels)[::step])
        ax.set_ylim(min(0.0, *[v for s in series.values() for v in s if v is not None]), 1.0)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
        return _svg(fig)
