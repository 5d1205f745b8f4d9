"""Small inline-SVG line charts for metric curves (no JavaScript, safe to poll)."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 320, 140, 24


@dataclass(frozen=True)
class Chart:
    name: str
    points: str  # SVG polyline points
    first: float
    last: float
    low: float
    high: float
    steps: int


def line_chart(name: str, series: list[tuple[int, float]]) -> Chart:
    """Scale ``[(step, value), …]`` into the chart box."""
    steps = [s for s, _ in series]
    values = [v for _, v in series]
    s0, s1 = min(steps), max(steps)
    low, high = min(values), max(values)
    span_s, span_v = (s1 - s0) or 1, (high - low) or 1.0
    points = " ".join(
        f"{PAD + (s - s0) / span_s * (WIDTH - 2 * PAD):.1f},"
        f"{HEIGHT - PAD - (v - low) / span_v * (HEIGHT - 2 * PAD):.1f}"
        for s, v in series
    )
    return Chart(name, points, values[0], values[-1], low, high, len(series))


PREFERRED = ("loss", "accuracy", "reward", "kl", "margin", "objective/kl", "rewards/mean")


def charts_for(series: dict[str, list[tuple[int, float]]], limit: int = 8) -> list[Chart]:
    """The most telling curves first (loss, accuracy, reward, KL), then the rest by name."""
    names = sorted(series, key=lambda n: (not any(n.endswith(p) for p in PREFERRED), n))
    curves = [name for name in names if len(series[name]) >= 2]  # one point is not a curve
    return [line_chart(name, series[name]) for name in curves[:limit]]
