"""Pure-computation quality and discretion metrics (no Django; NumPy/SciPy in, plain data out).

Modules: ``discretion`` (Buyl et al. DA / PS / priorities / DD), ``agreement`` (α, κ),
``consensus`` (majority, Dawid–Skene, Bradley–Terry, Elo, leaderboard), ``diagnostics``
(per-annotator bias, speed, outlier and gold checks).
"""

from annotation.quality.metrics.discretion import (
    categories,
    declared_weights,
    discrepancy,
    discretion_arbitrariness,
    discretion_profile,
    discretion_report,
    principle_supremacy,
    priority_weights,
)

__all__ = [
    "categories",
    "declared_weights",
    "discrepancy",
    "discretion_arbitrariness",
    "discretion_profile",
    "discretion_report",
    "principle_supremacy",
    "priority_weights",
]
