"""Judgments of algorithmic annotators (oracles, reward models, LLM judges, policies) from CSV.

The formats are those of the "AI Alignment at Your Discretion" files (Buyl et al., 2025; see
``shared/research/discretion.md``). Columns may come in any order; extra columns are ignored.
``row_id`` is the prompt's ``external_id`` in the project (the 0-based line of the HH-RLHF file
the project was imported from); "A" / ``reward_a`` / ``chosen`` is the task's response labelled
``chosen``, "B" / ``reward_b`` / ``rejected`` the one labelled ``rejected``.

* ``principle-oracle`` — ``row_id, principle_id, prob_A, prob_B, prob_NA`` (optional ``order``:
  0 = A is chosen, 1 = A is rejected). ``principle_id`` is the principle's position in the
  project's principle set (line order of the imported list). One judgment per task with
  ``ordering=[]`` (the oracle ranks nothing overall) and one ``PrincipleVerdict`` per principle:
  ``prefers`` the response with the larger probability, ``not_applicable`` when NA beats both or
  A == B; raw probabilities are kept in ``scores``.
* ``reward-model`` — ``row_id, reward_a, reward_b`` → ``sign(reward_a − reward_b)``.
* ``llm-judge`` — ``row_id, order, prob_A, prob_B, prob_NA`` with both presentation orders
  (0: A = chosen, 1: A = rejected) → ``sign(s0 − s1)`` where ``s_o = sign(prob_A − prob_B)`` in
  order o: a preference only when the orders do not contradict each other and NA wins in
  neither (the authors' ``(s0 − s1)/2`` rule).
* ``policy-logprob`` — ``row_id, log_prob_chat_chosen, log_prob_chat_rejected`` (optional
  ``order``; the ``"0,1"`` row is used, the log-probabilities do not depend on it) → the sign
  of the difference.

Conventions: a preference is the ordering ``[[chosen], [rejected]]`` (or reversed); an
abstention (equal scores, NA, order-inconsistent) is a judgment with ``ordering=[]`` and the
reason in ``rationale`` — the analytics read both ``[]`` and a tie bucket as "no preference".
Judgments carry ``origin="import:<format>"`` and do not count towards a task's human overlap
(``Task.submitted_count`` is left alone).

Like every importer: the whole file is validated first (``ImportFileError`` naming
``path:line``), then everything is written with ``bulk_create`` in one transaction.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.db.models import F

from annotation.errors import ImportFileError
from annotation.files import open_text
from annotation.models import (
    AnnotatorProfile,
    Judgment,
    PrincipleVerdict,
    Project,
    Task,
    TaskResponse,
)
from annotation.projects import services as project_services
from common import events

FORMATS = ("principle-oracle", "reward-model", "llm-judge", "policy-logprob")
REQUIRED = {
    "principle-oracle": ("row_id", "principle_id", "prob_A", "prob_B", "prob_NA"),
    "reward-model": ("row_id", "reward_a", "reward_b"),
    "llm-judge": ("row_id", "order", "prob_A", "prob_B", "prob_NA"),
    "policy-logprob": ("row_id", "log_prob_chat_chosen", "log_prob_chat_rejected"),
}
PROBABILITY_COLUMNS = {"prob_A", "prob_B", "prob_NA"}
NAME = re.compile(r"[\w.@+-]{1,150}")
BATCH = 2000
_IN_CHUNK = 5000  # ids per IN (...) query


@dataclass(frozen=True)
class JudgmentImportResult:
    format: str
    annotator: str
    rows: int  # data rows read
    judgments: int  # judgments written (preferences + abstentions)
    preferences: int  # judgments that prefer a response
    verdicts: int  # principle verdicts written (principle-oracle)
    skipped_rows: int  # rows with unknown row ids skipped (--ignore-unknown-rows)
    replaced: int  # earlier judgments of the annotator deleted (replace=True)


@dataclass(frozen=True)
class Pair:
    task_id: int
    chosen: int  # response id
    rejected: int


# ---------------------------------------------------------------- reading and validation


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: cell})`` per non-blank record (the line where the record starts)."""
    with open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if not header:
                raise ImportFileError(path, 1, "CSV needs a header row")
            header = [name.strip().lstrip("\ufeff") for name in header]
            if len(set(header)) != len(header):
                raise ImportFileError(path, 1, "duplicate column names in the CSV header")
            missing = [c for c in required if c not in header]
            if missing:
                raise ImportFileError(path, 1, f"missing column(s): {', '.join(missing)}")
            start = reader.line_num + 1
            width = len(header)
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != width:
                    raise ImportFileError(path, line, f"{len(cells)} cells for {width} columns")
                yield line, dict(zip(header, cells, strict=True))
        except csv.Error as exc:
            raise ImportFileError(path, reader.line_num, f"invalid CSV: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ImportFileError(path, reader.line_num + 1, f"not UTF-8 text: {exc}") from exc


def _int(path: Path, line: int, record: dict, column: str) -> int:
    cell = record[column].strip()
    try:
        value = int(cell)
    except ValueError:
        raise ImportFileError(path, line, f"{column} must be an integer, got {cell!r}") from None
    if value < 0:
        raise ImportFileError(path, line, f"{column} must be ≥ 0, got {value}")
    return value


def _float(path: Path, line: int, record: dict, column: str) -> float:
    cell = record[column].strip()
    try:
        value = float(cell)
    except ValueError:
        raise ImportFileError(path, line, f"{column} must be a number, got {cell!r}") from None
    if not math.isfinite(value):
        raise ImportFileError(path, line, f"{column} must be finite, got {cell!r}")
    if column in PROBABILITY_COLUMNS and not -1e-9 <= value <= 1 + 1e-9:
        raise ImportFileError(path, line, f"{column} must be a probability in [0, 1], got {cell}")
    return value


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _na_wins(a: float, b: float, na: float) -> bool:
    return na > a and na > b


def order_sign(a: float, b: float, na: float) -> int:
    """One presentation order's answer: +1 for A, −1 for B, 0 when NA beats both or A == B."""
    return 0 if _na_wins(a, b, na) else _sign(a - b)


def combine_orders(
    first: tuple[float, float, float], second: tuple[float, float, float]
) -> tuple[int, str]:
    """The authors' ``(s0 − s1)/2`` rule over both presentation orders of a pair.

    ``first`` and ``second`` are ``(prob_A, prob_B, prob_NA)`` with the pair shown as (x, y),
    then as (y, x). Returns +1 (x preferred), −1 (y preferred) or 0 with the reason: NA wins in
    either order, or the orders contradict each other.
    """
    if _na_wins(*first) or _na_wins(*second):
        return 0, "abstain: NA wins"
    s = _sign(_sign(first[0] - first[1]) - _sign(second[0] - second[1]))
    return s, "" if s else "abstain: the two orders disagree"


@dataclass(frozen=True)
class _Row:
    line: int
    row_id: int


@dataclass(frozen=True)
class _OracleRow(_Row):
    principle: int
    a: float
    b: float
    na: float
    a_is_chosen: bool
    order: int | None


@dataclass(frozen=True)
class _PrefRow(_Row):
    preference: int  # +1 chosen, -1 rejected, 0 abstain
    reason: str


def _parse_oracle(path: Path) -> list[_OracleRow]:
    rows: list[_OracleRow] = []
    seen: dict[tuple[int, int], int] = {}
    for line, rec in _csv_rows(path, REQUIRED["principle-oracle"]):
        row_id = _int(path, line, rec, "row_id")
        principle = _int(path, line, rec, "principle_id")
        order = None
        if "order" in rec:
            order = _int(path, line, rec, "order")
            if order not in (0, 1):
                raise ImportFileError(path, line, f"order must be 0 or 1, got {order}")
        key = (row_id, principle)
        if key in seen:
            raise ImportFileError(
                path, line, f"row_id {row_id}, principle_id {principle} repeats line {seen[key]}"
            )
        seen[key] = line
        rows.append(
            _OracleRow(
                line,
                row_id,
                principle,
                _float(path, line, rec, "prob_A"),
                _float(path, line, rec, "prob_B"),
                _float(path, line, rec, "prob_NA"),
                order != 1,
                order,
            )
        )
    return rows


def _parse_reward(path: Path) -> list[_PrefRow]:
    rows: list[_PrefRow] = []
    seen: dict[int, int] = {}
    for line, rec in _csv_rows(path, REQUIRED["reward-model"]):
        row_id = _int(path, line, rec, "row_id")
        if row_id in seen:
            raise ImportFileError(path, line, f"row_id {row_id} repeats line {seen[row_id]}")
        seen[row_id] = line
        s = _sign(_float(path, line, rec, "reward_a") - _float(path, line, rec, "reward_b"))
        rows.append(_PrefRow(line, row_id, s, "" if s else "abstain: equal rewards"))
    return rows


def _parse_judge(path: Path) -> list[_PrefRow]:
    orders: dict[int, dict[int, tuple[int, tuple[float, float, float]]]] = {}  # → (line, probs)
    for line, rec in _csv_rows(path, REQUIRED["llm-judge"]):
        row_id = _int(path, line, rec, "row_id")
        order = _int(path, line, rec, "order")
        if order not in (0, 1):
            raise ImportFileError(path, line, f"order must be 0 or 1, got {order}")
        a, b, na = (_float(path, line, rec, c) for c in ("prob_A", "prob_B", "prob_NA"))
        slot = orders.setdefault(row_id, {})
        if order in slot:
            raise ImportFileError(
                path, line, f"row_id {row_id}, order {order} repeats line {slot[order][0]}"
            )
        slot[order] = (line, (a, b, na))
    rows: list[_PrefRow] = []
    for row_id, slot in orders.items():
        if len(slot) != 2:
            (present,) = slot
            raise ImportFileError(
                path,
                slot[present][0],
                f"row_id {row_id} has order {present} only; llm-judge needs both orders (0 and 1)",
            )
        (line0, probs0), (line1, probs1) = slot[0], slot[1]
        s, reason = combine_orders(probs0, probs1)  # order 1 shows the rejected response as A
        rows.append(_PrefRow(min(line0, line1), row_id, s, reason))
    rows.sort(key=lambda r: r.line)
    return rows


def _parse_policy(path: Path) -> list[_PrefRow]:
    chosen: dict[int, tuple[int, str, _PrefRow]] = {}  # row_id → (line, order, row)
    for line, rec in _csv_rows(path, REQUIRED["policy-logprob"]):
        row_id = _int(path, line, rec, "row_id")
        order = re.sub(r"\s+", "", rec.get("order", "0,1"))
        if order not in ("0,1", "1,0"):
            raise ImportFileError(path, line, f'order must be "0,1" or "1,0", got {order!r}')
        diff = _float(path, line, rec, "log_prob_chat_chosen") - _float(
            path, line, rec, "log_prob_chat_rejected"
        )
        s = _sign(diff)
        row = _PrefRow(line, row_id, s, "" if s else "abstain: equal log-probabilities")
        previous = chosen.get(row_id)
        if previous is not None:
            if previous[1] == order:
                raise ImportFileError(
                    path, line, f"row_id {row_id}, order {order} repeats line {previous[0]}"
                )
            if order == "1,0":  # keep the "0,1" row
                continue
        chosen[row_id] = (line, order, row)
    return sorted((entry[2] for entry in chosen.values()), key=lambda r: r.line)


PARSERS = {
    "principle-oracle": _parse_oracle,
    "reward-model": _parse_reward,
    "llm-judge": _parse_judge,
    "policy-logprob": _parse_policy,
}


def parse_judgment_file(path: str | Path, fmt: str) -> list:
    """Validated rows of ``path`` (no database access)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ImportFileError(path, None, f"unknown format {fmt!r}; choose one of {FORMATS}")
    rows = PARSERS[fmt](path)
    if not rows:
        raise ImportFileError(path, None, "no data rows found")
    return rows


# ---------------------------------------------------------------- mapping onto the project


def project_pairs(project: Project, row_ids: list[int]) -> dict[int, Pair | str]:
    """row_id → the compare task of the prompt with that ``external_id`` (chosen, rejected), or
    a reason string when the prompt exists but has no such task; unknown ids are absent."""
    found: dict[int, dict[int, dict[str, int]]] = {}  # row_id → task_id → label → response
    ids = [str(r) for r in sorted(set(row_ids))]
    for start in range(0, len(ids), _IN_CHUNK):
        rows = TaskResponse.objects.filter(
            task__project=project,
            task__kind=Task.Kind.COMPARE,
            task__prompt__external_id__in=ids[start : start + _IN_CHUNK],
        ).values_list("task__prompt__external_id", "task_id", "response_id", "source_label")
        for external_id, task_id, response_id, label in rows:
            found.setdefault(int(external_id), {}).setdefault(task_id, {})[label] = response_id
    prompts_without_tasks: set[int] = set()
    missing = [str(m) for m in sorted({int(i) for i in ids} - set(found))]
    for start in range(0, len(missing), _IN_CHUNK):
        prompts_without_tasks.update(
            int(e)
            for e in project.prompts.filter(
                external_id__in=missing[start : start + _IN_CHUNK]
            ).values_list("external_id", flat=True)
        )
    no_task = "its prompt has no compare task"
    out: dict[int, Pair | str] = dict.fromkeys(prompts_without_tasks, no_task)
    for row_id, tasks in found.items():
        labelled = [
            Pair(task_id, labels["chosen"], labels["rejected"])
            for task_id, labels in tasks.items()
            if "chosen" in labels and "rejected" in labels
        ]
        if len(labelled) == 1:
            out[row_id] = labelled[0]
        elif not labelled:
            out[row_id] = "its compare task has no responses labelled chosen and rejected"
        else:
            out[row_id] = f"{len(labelled)} labelled compare tasks share its prompt"
    return out


def _annotator(path: Path, name: str, model_ref: str):
    if not NAME.fullmatch(name or ""):
        raise ImportFileError(
            path, None, "annotator name: 1–150 letters, digits and @ . + - _ (no spaces)"
        )
    user = project_services.get_or_create_model_annotator(name=name, model_ref=model_ref)
    kind = AnnotatorProfile.objects.filter(user=user).values_list("kind", flat=True).first()
    if kind != AnnotatorProfile.Kind.MODEL:
        raise ImportFileError(
            path, None, f"{name!r} is a human annotator; model judgments need a model annotator"
        )
    return user


# ---------------------------------------------------------------- writing


def _ordering(pair: Pair, preference: int) -> list[list[int]]:
    if preference > 0:
        return [[pair.chosen], [pair.rejected]]
    if preference < 0:
        return [[pair.rejected], [pair.chosen]]
    return []


@transaction.atomic
def import_judgments(
    *,
    project: Project,
    path: str | Path,
    fmt: str,
    annotator: str,
    model_ref: str = "",
    ignore_unknown_rows: bool = False,
    replace: bool = False,
) -> JudgmentImportResult:
    """Validate ``path`` completely, then write the annotator's judgments (all or nothing).

    ``replace`` deletes the annotator's earlier judgments on the same tasks first; without it
    an annotator that already judged one of the tasks is an error.
    """
    path = Path(path)
    rows = parse_judgment_file(path, fmt)
    pairs = project_pairs(project, [r.row_id for r in rows])
    skipped = 0
    kept = []
    for row in rows:
        pair = pairs.get(row.row_id)
        if isinstance(pair, str):
            raise ImportFileError(path, row.line, f"row_id {row.row_id}: {pair}")
        if pair is None:
            if not ignore_unknown_rows:
                raise ImportFileError(
                    path,
                    row.line,
                    f"row_id {row.row_id} is not in project {project.slug} (no prompt with "
                    "that external_id); pass --ignore-unknown-rows to skip such rows",
                )
            skipped += 1
            continue
        kept.append(row)
    if not kept:
        raise ImportFileError(path, None, f"no row of the file is in project {project.slug}")

    principle_ids: dict[int, int] = {}
    if fmt == "principle-oracle":
        principle_ids = dict(
            project.principle_set.principles.values_list("position", "id").order_by("position")
        )
        for row in kept:
            if row.principle not in principle_ids:
                raise ImportFileError(
                    path,
                    row.line,
                    f"principle_id {row.principle} is not in {project.principle_set.label} "
                    f"(positions 0..{len(principle_ids) - 1})",
                )

    user = _annotator(path, annotator, model_ref)
    task_ids = sorted({pairs[r.row_id].task_id for r in kept})
    existing = []
    for start in range(0, len(task_ids), _IN_CHUNK):
        existing += Judgment.objects.filter(
            annotator=user, task_id__in=task_ids[start : start + _IN_CHUNK]
        ).values_list("id", flat=True)
    if existing and not replace:
        raise ImportFileError(
            path,
            None,
            f"{annotator} already judged {len(existing)} of these tasks; "
            "re-import with --replace to overwrite them",
        )
    for start in range(0, len(existing), _IN_CHUNK):
        Judgment.objects.filter(id__in=existing[start : start + _IN_CHUNK]).delete()

    origin = f"import:{fmt}"
    if fmt == "principle-oracle":
        judgments, preferences, verdicts = _write_oracle(kept, pairs, principle_ids, user, origin)
    else:
        judgments = Judgment.objects.bulk_create(
            (
                Judgment(
                    task_id=pairs[row.row_id].task_id,
                    annotator=user,
                    ordering=_ordering(pairs[row.row_id], row.preference),
                    rationale=row.reason,
                    origin=origin,
                )
                for row in kept
            ),
            batch_size=BATCH,
        )
        judgments = len(judgments)
        preferences = sum(1 for row in kept if row.preference)
        verdicts = 0
    Project.objects.filter(pk=project.pk).update(
        judgment_count=F("judgment_count") + judgments - len(existing)
    )
    events.publish("judgments.imported", project_id=project.pk, judgments=judgments)
    return JudgmentImportResult(
        format=fmt,
        annotator=annotator,
        rows=len(rows),
        judgments=judgments,
        preferences=preferences,
        verdicts=verdicts,
        skipped_rows=skipped,
        replaced=len(existing),
    )


def _write_oracle(
    rows: list[_OracleRow],
    pairs: dict[int, Pair],
    principle_ids: dict[int, int],
    user,
    origin: str,
) -> tuple[int, int, int]:
    by_task: dict[int, list[_OracleRow]] = {}
    for row in rows:
        by_task.setdefault(pairs[row.row_id].task_id, []).append(row)
    created = Judgment.objects.bulk_create(
        (Judgment(task_id=t, annotator=user, ordering=[], origin=origin) for t in by_task),
        batch_size=BATCH,
    )
    judgment_of = {j.task_id: j.pk for j in created}

    def verdicts():
        for task_id, task_rows in by_task.items():
            judgment_id = judgment_of[task_id]
            for row in task_rows:
                pair = pairs[row.row_id]
                s = order_sign(row.a, row.b, row.na)
                if not row.a_is_chosen:
                    s = -s
                scores = {"A": row.a, "B": row.b, "NA": row.na}
                if row.order is not None:
                    scores["order"] = row.order
                yield PrincipleVerdict(
                    judgment_id=judgment_id,
                    principle_id=principle_ids[row.principle],
                    verdict=PrincipleVerdict.Verdict.PREFERS
                    if s
                    else PrincipleVerdict.Verdict.NOT_APPLICABLE,
                    preferred_response_id=(pair.chosen if s > 0 else pair.rejected) if s else None,
                    scores=scores,
                )

    written = len(PrincipleVerdict.objects.bulk_create(verdicts(), batch_size=5000))
    return len(created), 0, written
