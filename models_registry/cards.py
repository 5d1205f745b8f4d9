"""Model cards: markdown generated from a version's lineage record (never written by hand), so
the card always says exactly what the registry knows: chain, data, principles, annotators and
both discretion profiles."""

from __future__ import annotations

from typing import Any

from models_registry.models import ModelVersion


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return (
            " > ".join(
                "=".join(str(x) for x in v) if isinstance(v, list) else str(v) for v in value
            )
            or "–"
        )
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text[:200]


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _priority(profile: dict) -> str:
    return _cell(profile.get("priority") or [])


def _data_section(profile: dict) -> list[str]:
    out = ["## Discretion of the training data", ""]
    status = profile.get("status")
    if not profile:
        return [*out, "_not computed_", ""]
    if status == "failed":
        return [*out, f"_failed: {_cell(profile.get('error'))}_", ""]
    if profile.get("snapshot_kind") == "sft":
        out += [
            f"Snapshot {profile.get('snapshot')} holds demonstrations ("
            f"{profile.get('demonstrations', 0)}); {profile.get('note', '')}.",
            "",
        ]
        cited = profile.get("cited_principles") or {}
        return out + _table(["principle", "citations"], [[k, v] for k, v in cited.items()])
    cats = profile.get("categories") or {}
    out += [
        f"{profile.get('source', '')}; principle verdicts: {profile.get('verdict_source', '')}.",
        "",
        f"Comparisons: {profile.get('pairs', 0)} — consensus {cats.get('consensus', 0)}, "
        f"conflict {cats.get('conflict', 0)}, indifference {cats.get('indifference', 0)}.",
        "",
        f"Declared precedence: {_cell((profile.get('declared') or {}).get('priority'))}",
        "",
    ]
    rows = [
        [
            name,
            a.get("kind"),
            a.get("judgments"),
            a.get("da"),
            a.get("da_n"),
            _priority(a),
            a.get("dd_declared"),
        ]
        for name, a in (profile.get("annotators") or {}).items()
    ]
    out += _table(
        ["annotator", "kind", "judgments", "DA", "DA n", "revealed priority", "DD vs declared"],
        rows,
    )
    pooled = (profile.get("annotators") or {}).get(profile.get("pooled") or "")
    if pooled:
        out += ["Principle supremacy of the snapshot label (PS with conflict counts N):", ""]
        out += _table(
            ["winner", "loser", "PS", "N"],
            [[r["winner"], r["loser"], r["ps"], r["n"]] for r in pooled.get("supremacy") or []],
        )
    return out


def _model_section(profile: dict) -> list[str]:
    out = ["## The model's own discretion", ""]
    if not profile:
        return [*out, "_not measured yet_", ""]
    if profile.get("status") != "ready":
        reason = profile.get("reason") or profile.get("error") or profile.get("status")
        return [*out, f"_{_cell(reason)}_", ""]
    probe = profile.get("probe") or {}
    cats = profile.get("categories") or {}
    out += [
        f"Measured as annotator `{profile.get('annotator')}` via **{profile.get('method')}** on "
        f"{probe.get('description', '')} (project `{probe.get('project')}`, "
        f"{'held out' if probe.get('held_out') else 'in sample'}; verdicts: "
        f"{probe.get('verdict_source', '')}).",
        "",
        f"Comparisons: {profile.get('pairs', 0)} — consensus {cats.get('consensus', 0)}, "
        f"conflict {cats.get('conflict', 0)}, indifference {cats.get('indifference', 0)}.",
        "",
        f"- Discretion arbitrariness (DA): {_cell(profile.get('da'))} "
        f"over {profile.get('da_n', 0)} consensus comparisons",
        f"- Revealed principle priority: {_priority(profile)}",
        f"- DD vs declared precedence: {_cell(profile.get('dd_declared'))}",
        *(
            [f"- DD vs the precedence it was trained to: {_cell(profile.get('dd_target'))}"]
            if "dd_target" in profile
            else []
        ),
        f"- DD vs the human majority: {_cell(profile.get('dd_humans'))}",
        f"- Agreement with the human majority: {_cell(profile.get('agreement_with_humans'))}",
        "",
        "Principle supremacy (PS with conflict counts N):",
        "",
    ]
    out += _table(
        ["winner", "loser", "PS", "N"],
        [[r["winner"], r["loser"], r["ps"], r["n"]] for r in profile.get("supremacy") or []],
    )
    if profile.get("follows_target"):
        out += ["Does the model put each principle where it was trained to?", ""]
        out += _table(
            ["higher (target)", "lower (target)", "PS(higher, lower)", "N", "follows"],
            [
                [r["higher"], r["lower"], r["ps"], r["n"], r["follows"]]
                for r in profile["follows_target"]
            ],
        )
    dd = {**(profile.get("dd_annotators") or {}), **(profile.get("dd_models") or {})}
    out += ["DD against each annotator of the probe:", ""]
    out += _table(["annotator", "DD"], [[k, v] for k, v in dd.items()])
    return out


def _precedence_section(precedence: dict) -> list[str]:
    """A policy trained to a precedence of principles: the ranking, its origin, the weights
    that mixed the principle reward models, and which model stood for each principle."""
    if not precedence:
        return []
    origin = precedence.get("origin") or {}
    source = {
        "declared": f"the declared precedence of {origin.get('principle_set', '–')}",
        "explicit": "explicit weights",
        "revealed": "the revealed priorities of "
        + ", ".join(origin.get("annotators") or [])
        + f" on {origin.get('project', '–')}",
    }.get(origin.get("kind"), "–")
    out = [
        "## Trained to a precedence of principles",
        "",
        f"Ranking {_cell(precedence.get('ranking'))}, from {source}.",
        "",
    ]
    models = precedence.get("reward_model_labels") or {}
    return out + _table(
        ["principle", "weight", "reward model"],
        [[k, w, models.get(k)] for k, w in (precedence.get("weights") or {}).items()],
    )


def render_model_card(version: ModelVersion) -> str:
    """The version's model card (markdown) from its lineage record."""
    from models_registry import selectors
    from models_registry.selectors import _flatten

    record = selectors.lineage(version)
    head = record["model"]
    run = record["run"] or {}
    lines = [
        f"# Model card: {head['label']}",
        "",
        f"- Kind: **{head['kind']}** · stage: **{head['stage']}** · registered "
        f"{head['created_at']}",
        f"- Artifact: `{head['artifact_uri'] or '–'}` (sha256 `{head['sha256'] or '–'}`, "
        f"{head['size_bytes']} bytes)"
        + (
            "; a LoRA adapter over its base (download it merged with `?format=merged`)"
            if head["artifact_format"] == "adapter"
            else ""
        ),
        f"- Acts as annotator `{head['annotator'] or '–'}` in discretion reports",
    ]
    if run:
        lines.append(f"- Trained by run {run['id']} ({run['kind']}, {run['status']})")
    lines += ["", "## Lineage", ""]
    lines += _table(
        ["depth", "model", "kind", "reached via", "snapshot", "principle set", "parents"],
        [
            [
                n["depth"],
                n["label"],
                n["kind"],
                " / ".join("→".join(p) or "self" for p in n["paths"]),
                n["snapshot"],
                n["principle_set"],
                ", ".join(f"{p['role']}: {p['label']}" for p in n["parents"]) or None,
            ]
            for n in record["chain"]
        ],
    )
    bases = [f"{b['version']} ← {b['base_model'] or 'from scratch'}" for b in record["base"]]
    lines += ["Base: " + (", ".join(bases) or "–"), "", "## Training data", ""]
    lines += _table(
        ["snapshot", "kind", "project", "rows", "sha256", "principle set", "used by"],
        [
            [
                s["id"],
                s["kind"],
                s["project"],
                s["row_count"],
                s["sha256"][:16] or None,
                s["principle_set"],
                ", ".join(s["used_by"]),
            ]
            for s in record["snapshots"]
        ],
    )
    for s in record["snapshots"]:
        active = {k: v for k, v in (s["filters"] or {}).items() if v not in (None, [], False, "")}
        lines += [
            f"Snapshot {s['id']} filters: "
            + (", ".join(f"{k}={v}" for k, v in active.items()) or "none"),
            "",
        ]
    lines += ["## Principles", ""]
    for ps in record["principle_sets"]:
        lines += [f"### {ps['label']} ({ps['status']})", ""]
        lines += _table(
            ["key", "title", "authority", "declared priority"],
            [
                [p["key"], p["title"], p["authority"], p["declared_priority"]]
                for p in ps["principles"]
            ],
        )
        diff = ps.get("diff")
        if diff:
            changed = ", ".join(f"{c['key']} ({', '.join(c['fields'])})" for c in diff["changed"])
            lines += [
                f"Changes from {diff['base']}: added {', '.join(diff['added']) or '–'}; "
                f"removed {', '.join(diff['removed']) or '–'}; changed {changed or '–'}.",
                "",
            ]
        else:
            lines += ["First version (no earlier version to compare).", ""]
    lines += ["## Annotators", "", "Contributions to this version's own training data:", ""]
    lines += _table(
        ["annotator (pseudonym)", "kind", "count", "unit", "share"],
        [
            [k, v.get("kind"), v.get("judgments"), v.get("unit"), v.get("share")]
            for k, v in (record["annotator_contributions"] or {}).items()
            if isinstance(v, dict)
        ],
    )
    lines += ["All annotators on the lineage:", ""]
    lines += _table(
        ["annotator (pseudonym)", "kind", "total", "share", "per snapshot"],
        [
            [
                k,
                v["kind"],
                v["total"],
                v["share"],
                ", ".join(f"#{s}: {n}" for s, n in v["snapshots"].items()),
            ]
            for k, v in record["annotators"].items()
        ],
    )
    lines += _precedence_section(version.precedence)
    lines += _data_section(record["data_discretion_profile"] or {})
    lines += _model_section(record["model_discretion_profile"] or {})
    metrics = _flatten(record["eval_metrics"] or {})
    lines += ["## Evaluation", ""]
    lines += _table(["metric", "value"], [[k, v] for k, v in metrics.items()])
    lines += ["## Stage history", ""]
    lines += _table(
        ["when", "from", "to", "by", "note"],
        [
            [c["changed_at"], c["from_stage"], c["to_stage"], c["changed_by"], c["note"]]
            for c in record["stage_history"]
        ],
    )
    return "\n".join(lines).rstrip() + "\n"


def refresh_model_card(version: ModelVersion) -> str:
    """Regenerate and store the card (after registration, profiling, a stage change)."""
    card = render_model_card(version)
    ModelVersion.objects.filter(pk=version.pk).update(model_card=card)
    version.model_card = card
    return card
