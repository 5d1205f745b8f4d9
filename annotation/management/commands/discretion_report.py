"""``manage.py discretion_report --project SLUG [--reference NAME] [--bootstrap N] [--json]``."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small BT fits: one BLAS thread is fastest

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import MetricsReport, Project
from annotation.quality import inputs, payloads, reports


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _num(x, nd: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return "+∞" if x == "inf" else "−∞"
    return f"{x:.{nd}f}"


class Command(BaseCommand):
    help = (
        "Discretion metrics of a project (Buyl et al. 2025): categories, DA, principle supremacy, "
        "priorities and discrepancy for every annotator plus the dataset's own label ('human')."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument(
            "--reference",
            help="Annotator whose principle verdicts define P (e.g. an imported oracle); "
            "default: the human annotators' verdicts, plurality per task and principle.",
        )
        parser.add_argument(
            "--bootstrap", type=int, default=0, help="Bootstrap resamples for the SD of DA."
        )
        parser.add_argument("--seed", type=int, default=0, help="Bootstrap seed.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument(
            "--store", action="store_true", help="Also cache the result for the web pages."
        )

    def handle(self, *args, project, reference, bootstrap, seed, json: bool, store, **_):
        try:
            proj = Project.objects.select_related("principle_set").get(slug=project)
        except Project.DoesNotExist as exc:
            raise CommandError(f"no project with slug {project!r}") from exc
        if reference and not inputs.User.objects.filter(username=reference).exists():
            raise CommandError(f"no annotator called {reference!r}")
        if bootstrap < 0:
            raise CommandError("--bootstrap must be ≥ 0")
        if store:
            report = reports.compute_and_store(
                proj,
                MetricsReport.Kind.DISCRETION,
                {"reference": reference, "bootstrap": bootstrap},
            )
            payload = report.payload
        else:
            payload = payloads.discretion_payload(
                proj, reference=reference, bootstrap=bootstrap, seed=seed
            )
        if json:
            self.stdout.write(_dumps(payloads.report_json(payload)))
            return
        self._tables(proj, payload)

    def _tables(self, project: Project, payload: dict) -> None:
        out = self.stdout.write
        meta = payload["meta"]
        n = payload["pairs"]
        source = meta["verdict_source"]
        out(f"Discretion report — project {project.slug}: {n} pairs, P from {source}")
        cats = payload["categories"]
        shares = (f"{k} {v} ({100 * v / n:.1f}%)" if n else f"{k} {v}" for k, v in cats.items())
        out("Categories: " + "  ".join(shares))
        if meta["covered_pairs"] == 0:
            out("(no principle verdicts: every pair is indifferent; pass --reference NAME)")
        names = list(payload["annotators"])
        width = max([len(x) for x in names] + [9])
        out("")
        out(
            f"{'annotator':<{width}}  {'kind':<8} {'DA':>8} {'± sd':>7} {'errors/n':>11} "
            f"{'DD decl.':>8}  priority (highest first)"
        )
        for name, a in payload["annotators"].items():
            sd = "—" if a["da_sd"] is None else f"{100 * a['da_sd']:.2f}"
            errs = meta["da_errors"].get(name)
            frac = f"{errs}/{a['da_n']}" if errs is not None else f"—/{a['da_n']}"
            top = " > ".join("=".join(tier) for tier in a["priority"][:6])
            if len(a["priority"]) > 6:
                top += " > …"
            out(
                f"{name:<{width}}  {meta['kinds'].get(name, ''):<8} {_pct(a['da']):>8} {sd:>7} "
                f"{frac:>11} {_num(a['dd'].get('declared')):>8}  {top}"
            )
        out("")
        out("Discretion discrepancy DD (0 = same priority order, 1 = reversed)")
        out(f"{'':<{width}}  " + " ".join(f"{x[:8]:>8}" for x in names))
        for name in names:
            dd = payload["annotators"][name]["dd"]
            cells = " ".join(
                f"{'·':>8}" if other == name else f"{_num(dd.get(other)):>8}" for other in names
            )
            out(f"{name:<{width}}  {cells}")
        out("")
        titles = {p["key"]: p["title"] for p in meta["principles"]}
        for name, rows in payload["supremacy"].items():
            shown = [r for r in rows if r["ps"] >= 0.5][:8]
            if not shown:
                continue
            out(f"Principle supremacy — {name} (largest conflicts; PS = share won by the winner)")
            for r in shown:
                out(f"  {r['winner']:>6} over {r['loser']:<6} PS {r['ps']:.2f}  N {r['n']}")
        out("")
        out("Principles: " + "; ".join(f"{k} = {t}" for k, t in titles.items()))


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)
