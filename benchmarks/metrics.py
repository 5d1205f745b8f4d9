"""Benchmark of annotation.quality.metrics:
`.venv/bin/python benchmarks/metrics.py [--skip-synthetic]`.

Small BT fits (L-BFGS-B) slow down several-fold when OpenBLAS threads compete for busy cores;
compare with `OPENBLAS_NUM_THREADS=1`.

(a) The HH-RLHF slice of Buyl et al. end to end from shared/data (absent → skipped).
(b) Synthetic scale: 1,000,000 comparisons × 21 principles × 4 annotators, all metrics.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "metrics"))

from annotation.quality.metrics.agreement import LabelMatrix, agreement  # noqa: E402
from annotation.quality.metrics.consensus import (  # noqa: E402
    bt_leaderboard,
    dawid_skene,
    elo,
    majority_vote,
)
from annotation.quality.metrics.discretion import (  # noqa: E402
    categories,
    discrepancy,
    discrepancy_bootstrap,
    discretion_arbitrariness,
    discretion_report,
    principle_supremacy,
    priority_weights,
)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fmt(x: float | None, scale: float = 100.0, nd: int = 1) -> str:
    return "  n/a" if x is None else f"{x * scale:5.{nd}f}"


# ---------------------------------------------------------------- (a)


def paper_slice() -> None:
    import hh_slice_data as hh

    if not hh.DATA_DIR.is_dir():
        print(f"(a) skipped: {hh.DATA_DIR} absent")
        return
    print("(a) HH-RLHF harmless-base test slice (Buyl et al. files)")
    (P, annotators, names), t_parse = timed(
        lambda: (hh.principle_matrix(), hh.annotators(), hh.principle_names())
    )
    print(f"    CSV parsing: {t_parse:.3f} s  ({P.shape[0]} pairs × {P.shape[1]} principles)")
    report, t_metrics = timed(
        lambda: discretion_report(P, annotators, names, reference="human", bootstrap=1000, seed=0)
    )
    fitted = {
        name: priority_weights(*principle_supremacy(P, a), names) for name, a in annotators.items()
    }
    dd_all, t_dd = timed(
        lambda: {(x, y): discrepancy(fitted[x], fitted[y]) for x in fitted for y in fitted}
    )
    boot, t_boot = timed(lambda: discrepancy_bootstrap(P, annotators, "human", n_boot=100, seed=0))
    c = report["categories"]
    n = report["n"]
    print("    categories: " + ", ".join(f"{k} {v} ({100 * v / n:.1f}%)" for k, v in c.items()))
    print(
        f"    {'annotator':20s} {'+1':>5s} {'-1':>5s} {'abst':>5s} {'DA%':>6s} {'±sd':>5s} "
        f"{'DA k/n':>9s} {'DD%':>6s} {'DDboot':>13s}  top priorities"
    )
    for name, prof in report["annotators"].items():
        a = annotators[name]
        da = discretion_arbitrariness(P, a)
        b = boot[name]
        top = " > ".join("/".join(g) for g in prof["priority"][:3])
        print(
            f"    {name:20s} {(a > 0).sum():5d} {(a < 0).sum():5d} {(a == 0).sum():5d} "
            f"{fmt(prof['da'], nd=2):>6s} {fmt(prof['da_sd'], nd=2):>5s} "
            f"{da.numerator:4d}/{da.denominator:<4d} {fmt(prof['dd_reference']):>6s} "
            f"{fmt(b['mean'])}±{fmt(b['sd'])}  {top}"
        )
    human = report["annotators"]["human"]
    print("    human: largest conflicts (winner > loser: PS, N)")
    for s in human["supremacy"][:6:2]:
        print(f"      {s['winner']} > {s['loser']}: {s['ps']:.3f}, {s['n']}")
    undefined = {
        k: [p for p, w in v["weights"].items() if w is None]
        for k, v in report["annotators"].items()
    }
    inf = {
        k: sum(w in ("inf", "-inf") for w in v["weights"].values())
        for k, v in report["annotators"].items()
    }
    print(f"    ±inf weights per annotator: {inf}")
    print(f"    undefined principles: { {k: v for k, v in undefined.items() if v} or 'none' }")
    print("    DD×100 matrix (rows/cols in the order above):")
    keys = list(fitted)
    for x in keys:
        print("      " + " ".join(fmt(dd_all[x, y], nd=0).rjust(4) for y in keys) + f"  {x}")
    print(
        f"    metric time (excl. parsing): report for {len(annotators)} annotators incl. "
        f"1000-resample DA bootstrap {t_metrics:.3f} s; all-pairs DD {t_dd:.3f} s; "
        f"paired DD bootstrap (100 refits × {len(annotators)}) {t_boot:.3f} s"
    )


# ---------------------------------------------------------------- (b)


def synthetic(n: int = 1_000_000, k: int = 21, n_ann: int = 4, seed: int = 0) -> None:
    print(f"(b) synthetic: {n:,} comparisons × {k} principles × {n_ann} annotators")
    rng = np.random.default_rng(seed)

    def generate() -> tuple[np.ndarray, dict[str, np.ndarray]]:
        decisive = rng.random((n, k)) < 3.4 / k
        P = np.where(decisive, rng.choice(np.array([-1, 1], np.int8), size=(n, k)), 0)
        P = P.astype(np.int8)
        base = rng.normal(size=k)
        ann = {}
        for j in range(n_ann):
            w = base + 0.5 * rng.normal(size=k)
            top = np.where(P != 0, w[None, :], -np.inf).argmax(axis=1)
            a = P[np.arange(n), top]
            a = np.where(a == 0, rng.choice(np.array([-1, 1], np.int8), size=n), a)
            a = np.where(rng.random(n) < 0.1 + 0.05 * j, -a, a)  # noise grows with j
            a[rng.random(n) < 0.05] = 0  # abstain
            ann[f"ann{j}"] = a.astype(np.int8)
        return P, ann

    (P, ann), t_gen = timed(generate)
    print(f"    generation: {t_gen:.2f} s (not counted)")
    t0 = time.perf_counter()
    cats, t = timed(lambda: categories(P))
    print(f"    categories {t:.3f} s: {cats.counts}")
    report, t = timed(
        lambda: discretion_report(
            P, ann, [f"c{i}" for i in range(k)], reference="ann0", bootstrap=1000, seed=0
        )
    )
    print(f"    discretion_report (DA+1000 bootstrap, PS, BT, DD) {t:.3f} s")
    for name, prof in report["annotators"].items():
        print(
            f"      {name}: DA {fmt(prof['da'], nd=2)}% ±{fmt(prof['da_sd'], nd=2)} "
            f"(n {prof['da_n']}), DD vs ann0 {fmt(prof['dd_reference'])}%"
        )
    sup, t = timed(lambda: principle_supremacy(P, ann["ann0"]))
    print(f"    principle_supremacy alone (one annotator) {t:.3f} s; N total {sup.n.sum() // 2:,}")

    # choices as labels: 1 = prefers response 1, 0 = response 0, NaN = abstain
    codes = np.vstack([np.where(a == 0, np.nan, (a > 0).astype(np.float64)) for a in ann.values()])
    m = LabelMatrix.from_codes(codes, labels=["r0", "r1"])
    rep, t = timed(lambda: agreement(m))
    print(
        f"    agreement (α, Fleiss, {len(rep.cohen)} Cohen pairs) {t:.3f} s: α {rep.alpha:.4f}, "
        f"Fleiss {rep.fleiss_kappa:.4f} ({rep.fleiss_items:,} items), "
        f"Cohen mean {rep.cohen_mean:.4f}"
    )
    votes, t = timed(lambda: majority_vote(m))
    tied = sum(v.label is None for v in votes.values())
    print(f"    majority_vote {t:.3f} s ({tied:,} tied items)")
    ds, t = timed(lambda: dawid_skene(m))
    acc = {a: round(v, 4) for a, v in ds.accuracy.items()}
    print(f"    dawid_skene {t:.3f} s ({ds.n_iter} iterations, converged {ds.converged}): {acc}")
    t_all = time.perf_counter() - t0
    # Arena-style leaderboard on n battles between 20 models
    strength = rng.normal(scale=1.0, size=20)
    i, j = rng.integers(0, 20, size=(2, n))
    j = np.where(i == j, (j + 1) % 20, j)
    p = 1 / (1 + np.exp(strength[j] - strength[i]))
    u = rng.random(n)
    outcome = np.where(u < 0.1, "tie", np.where(u < 0.1 + 0.9 * p, "a_wins", "b_wins"))
    battles = list(zip([f"m{x}" for x in i], [f"m{x}" for x in j], outcome.tolist(), strict=True))
    t1 = time.perf_counter()
    board, t = timed(lambda: bt_leaderboard(battles, n_boot=100, seed=0))
    print(
        f"    bt_leaderboard ({n:,} battles, 20 models, 100 bootstraps) {t:.3f} s; top: "
        + ", ".join(
            f"{r['item']} {r['score']:.0f} [{r['ci_low']:.0f},{r['ci_high']:.0f}]"
            for r in board[:3]
        )
    )
    _, t = timed(lambda: elo(battles))
    print(f"    elo ({n:,} battles, online) {t:.3f} s")
    t_all += time.perf_counter() - t1
    print(f"    total metric time {t_all:.2f} s; peak RSS (ru_maxrss) {rss_mb():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--n", type=int, default=1_000_000)
    args = parser.parse_args()
    import os

    import scipy

    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(
        f"numpy {np.__version__}, scipy {scipy.__version__}, OPENBLAS_NUM_THREADS={threads}, "
        f"{os.cpu_count()} CPUs"
    )
    paper_slice()
    if not args.skip_synthetic:
        synthetic(n=args.n)


if __name__ == "__main__":
    main()
