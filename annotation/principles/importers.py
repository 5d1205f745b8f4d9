"""Principle-set importers: YAML/JSON, one principle per line, and OpenAI Model Spec markdown."""

import json
import re
import tempfile
from itertools import pairwise
from pathlib import Path

import yaml
from django.db import transaction
from django.utils.text import slugify
from markdown_it import MarkdownIt

from annotation.errors import ImportFileError
from annotation.files import numbered_lines, open_text
from annotation.models import Principle, PrincipleSet
from annotation.principles import services
from annotation.specs import PrincipleSpec
from common.errors import DomainError

# "## Title {#stable_id authority=root}" — the heading syntax of the OpenAI Model Spec.
SPEC_TAG = re.compile(r"\{#([A-Za-z0-9_\-]+)((?:\s+[a-z_]+=[^\s}]+)*)\s*\}")
KIND_BY_AUTHORITY = {
    "platform": Principle.Kind.RULE,
    "root": Principle.Kind.RULE,
    "system": Principle.Kind.RULE,
    "developer": Principle.Kind.DEFAULT,
    "user": Principle.Kind.DEFAULT,
    "guideline": Principle.Kind.GUIDELINE,
}
FORMATS = ("yaml", "json", "lines", "model-spec")


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".yaml", ".yml"}:
        return "yaml"
    if suffix == ".json":
        return "json"
    if suffix in {".md", ".markdown"}:
        return "model-spec"
    return "lines"


def parse_lines(path: Path, titles: Path | None = None) -> list[PrincipleSpec]:
    """One principle per non-blank line; keys ``p00``… follow line order (external files use it)."""
    texts = [(n, line.strip()) for n, line in numbered_lines(path) if line.strip()]
    if not texts:
        raise ImportFileError(path, None, "no principles found")
    short = [line.strip() for _, line in numbered_lines(titles) if line.strip()] if titles else []
    if titles and len(short) != len(texts):
        raise ImportFileError(
            titles, None, f"{len(short)} titles for {len(texts)} principles: counts must match"
        )
    width = max(2, len(str(len(texts) - 1)))
    return [
        PrincipleSpec(
            key=f"p{index:0{width}d}",
            title=(short[index] if short else text)[:300],
            text=text,
        )
        for index, (_, text) in enumerate(texts)
    ]


def _spec_from_mapping(path: Path, index: int, item: object) -> PrincipleSpec:
    where = f"principle #{index + 1}"
    if not isinstance(item, dict):
        raise ImportFileError(path, None, f"{where}: expected a mapping, got {type(item).__name__}")
    key = str(item.get("key") or item.get("id") or "").strip()
    title = str(item.get("title") or "").strip()
    text = str(item.get("text") or "").strip()
    if not key or not re.fullmatch(r"[A-Za-z0-9_\-]+", key):
        raise ImportFileError(path, None, f"{where}: 'key' must be letters, digits, - or _")
    if not (title or text):
        raise ImportFileError(path, None, f"{where} ({key}): needs a 'title' or 'text'")
    authority = str(item.get("authority", Principle.Authority.USER))
    if authority not in Principle.Authority.values:
        raise ImportFileError(path, None, f"{where} ({key}): unknown authority {authority!r}")
    kind = str(item.get("kind", KIND_BY_AUTHORITY[authority]))
    if kind not in Principle.Kind.values:
        raise ImportFileError(path, None, f"{where} ({key}): unknown kind {kind!r}")
    priority = item.get("declared_priority", item.get("priority"))
    if priority is not None and (not isinstance(priority, int) or priority < 0):
        raise ImportFileError(path, None, f"{where} ({key}): priority must be an integer ≥ 0")
    return PrincipleSpec(
        key=key,
        title=(title or text)[:300],
        text=text,
        section=str(item.get("section", "")),
        kind=kind,
        authority=authority,
        declared_priority=priority,
    )


def parse_structured(path: Path, fmt: str) -> tuple[list[PrincipleSpec], dict]:
    """YAML or JSON: a list of principles, or ``{name, description, principles: [...]}``."""
    with open_text(path) as handle:
        try:
            data = yaml.safe_load(handle) if fmt == "yaml" else json.load(handle)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            line = line + 1 if line is not None else getattr(exc, "lineno", None)
            raise ImportFileError(path, line, f"invalid {fmt.upper()}: {exc}") from exc
    meta: dict = {}
    if isinstance(data, dict):
        meta = {k: data[k] for k in ("name", "description") if k in data}
        data = data.get("principles")
    if not isinstance(data, list) or not data:
        raise ImportFileError(path, None, "expected a non-empty list of principles")
    return [_spec_from_mapping(path, i, item) for i, item in enumerate(data)], meta


def parse_model_spec(path: Path) -> list[PrincipleSpec]:
    """Every heading tagged ``{#id authority=…}`` becomes a principle; its text runs to the next
    heading of the same or a higher level, and ``section`` is the enclosing heading. Headings are
    found by a CommonMark parser, so ``#`` lines inside code fences are ignored."""
    with open_text(path) as handle:
        source = handle.read()
    lines = source.splitlines()
    tokens = MarkdownIt("commonmark").parse(source)
    headings = []  # (first line index, level, title, id, authority)
    for token, inline in pairwise(tokens):
        if token.type != "heading_open" or token.map is None:
            continue
        level = int(token.tag[1])
        match = SPEC_TAG.search(inline.content)
        title = SPEC_TAG.sub("", inline.content).strip()
        attrs = dict(a.split("=", 1) for a in match.group(2).split()) if match else {}
        key = match.group(1) if match else None
        headings.append((token.map[0], level, title, key, attrs.get("authority")))
    specs: list[PrincipleSpec] = []
    for position, (index, level, title, key, authority) in enumerate(headings):
        if authority is None:
            continue
        if authority not in Principle.Authority.values:
            raise ImportFileError(path, index + 1, f"unknown authority {authority!r}")
        end = next((h[0] for h in headings[position + 1 :] if h[1] <= level), len(lines))
        section = next((h[2] for h in reversed(headings[:position]) if h[1] < level), "")
        specs.append(
            PrincipleSpec(
                key=key,
                title=title[:300],
                text="\n".join(lines[index + 1 : end]).strip(),
                section=section[:300],
                kind=KIND_BY_AUTHORITY[authority],
                authority=authority,
            )
        )
    if not specs:
        raise ImportFileError(path, None, "no '{#id authority=…}' headings found")
    return specs


def parse_principles(
    path: str | Path, fmt: str | None = None, titles: str | Path | None = None
) -> tuple[list[PrincipleSpec], dict]:
    """Parse any supported principle file into specs plus optional name/description."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ImportFileError(path, None, f"unknown format {fmt!r}; choose one of {FORMATS}")
    if fmt in {"yaml", "json"}:
        return parse_structured(path, fmt)
    if fmt == "model-spec":
        return parse_model_spec(path), {}
    return parse_lines(path, Path(titles) if titles else None), {}


PASTED = "pasted text"
SUFFIX_BY_FORMAT = {"yaml": ".yaml", "json": ".json", "lines": ".txt", "model-spec": ".md"}


def parse_text(text: str, fmt: str) -> tuple[list[PrincipleSpec], dict]:
    """Pasted text in one of ``FORMATS``, parsed by the same readers as a file (it is written
    to a temporary file); errors name the line of the text, not the temporary file."""
    if fmt not in FORMATS:
        raise ImportFileError(PASTED, None, f"unknown format {fmt!r}; choose one of {FORMATS}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"pasted{SUFFIX_BY_FORMAT[fmt]}"
        path.write_text(text.replace("\r\n", "\n"), encoding="utf-8")
        try:
            return parse_principles(path, fmt)
        except ImportFileError as exc:
            reason = exc.reason.replace(str(path), PASTED)
            raise ImportFileError(PASTED, exc.line, reason) from exc


@transaction.atomic
def import_principles(
    *,
    path: str | Path,
    name: str | None = None,
    fmt: str | None = None,
    titles: str | Path | None = None,
    publish: bool = False,
    created_by=None,
) -> PrincipleSet:
    """Parse ``path`` and store it as the next version of the named principle set."""
    specs, meta = parse_principles(path, fmt, titles)
    set_name = name or meta.get("name") or slugify(Path(path).stem) or "principles"
    try:
        return services.create_principle_set(
            name=set_name,
            principles=specs,
            description=str(meta.get("description", "")),
            source=Path(path).name,
            created_by=created_by,
            publish=publish,
        )
    except DomainError as exc:
        raise ImportFileError(path, None, str(exc)) from exc
