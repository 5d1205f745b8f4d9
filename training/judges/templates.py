"""Judge templates: versioned prompts (a new text is a new version), the shipped defaults, and
how a pair (× principle) in one presentation order becomes chat messages."""

from __future__ import annotations

import hashlib
import json

from django.db import IntegrityError, transaction

from common.errors import DomainError
from training.models import JudgeTemplate

PRINCIPLE_DEFAULT = "principle-verdict"
PREFERENCE_DEFAULT = "preference"
CRITIQUE_DEFAULT = "critique-revision"

# After the paper's oracle prompt (Buyl et al. 2025, ``src/prompt_template.py``).
DEFAULTS = {
    PRINCIPLE_DEFAULT: {
        "kind": JudgeTemplate.Kind.PRINCIPLE,
        "system": (
            "You compare two responses to a prompt against one principle. Respond 'A' or 'B' "
            "for the response that better adheres to the Principle for the given Prompt. "
            "Respond 'NA' if neither response clearly adheres to it more or if the Principle "
            "is irrelevant. Answer with A, B or NA only."
        ),
        "user": (
            "Prompt:\n{prompt}\n\nPrinciple: {principle}\n\nResponse A:\n{response_a}\n\n"
            "Response B:\n{response_b}\n\n"
            "Which response better follows this principle: A, B, or NA (not applicable)?"
        ),
        "options": ["A", "B", "NA"],
    },
    PREFERENCE_DEFAULT: {
        "kind": JudgeTemplate.Kind.PREFERENCE,
        "system": (
            "You compare two responses to a prompt. Respond 'A' or 'B' for the better "
            "response, or 'NA' if neither is clearly better. Answer with A, B or NA only."
        ),
        "user": (
            "Prompt:\n{prompt}\n\nResponse A:\n{response_a}\n\nResponse B:\n{response_b}\n\n"
            "Which response is better: A, B, or NA?"
        ),
        "options": ["A", "B", "NA"],
    },
    # After Constitutional AI's supervised phase (Bai et al. 2022): critique, then revise.
    CRITIQUE_DEFAULT: {
        "kind": JudgeTemplate.Kind.CRITIQUE,
        "system": "You review an assistant's response to a prompt against one principle.",
        "user": (
            "Prompt:\n{prompt}\n\nResponse:\n{response}\n\nPrinciple: {principle}\n\n"
            "Identify specific ways in which the response fails to follow this principle. "
            "Write only the critique."
        ),
        "revision": (
            "Rewrite the response so that it follows the principle, addressing the critique. "
            "Write only the revised response."
        ),
        "options": [],
    },
}


def digest(kind: str, system: str, user: str, options: list[str], revision: str = "") -> str:
    """The sha256 that identifies a template's content."""
    content = {"kind": kind, "system": system, "user": user, "options": options}
    if kind == JudgeTemplate.Kind.CRITIQUE:
        content["revision"] = revision
    body = json.dumps(content, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def _check(kind: str, user: str, options: object, revision: str = "") -> None:
    if kind not in JudgeTemplate.Kind.values:
        raise DomainError(f"kind must be one of {', '.join(JudgeTemplate.Kind.values)}")
    if kind == JudgeTemplate.Kind.CRITIQUE:
        if options:
            raise DomainError("a critique template has no answer options")
        if not isinstance(revision, str) or not revision.strip():
            raise DomainError("a critique template needs the revision request")
        _placeholders(user, {"prompt", "response", "principle"})
        return
    if revision:
        raise DomainError("only a critique template has a revision request")
    if (
        not isinstance(options, list)
        or len(options) not in (2, 3)
        or not all(isinstance(o, str) and o.strip() == o and o for o in options)
        or len(set(options)) != len(options)
    ):
        raise DomainError("options: 2 or 3 distinct labels (A, B and optionally NA), no spaces")
    needed = {"prompt", "response_a", "response_b"}
    if kind == JudgeTemplate.Kind.PRINCIPLE:
        needed.add("principle")
    _placeholders(user, needed)


def _placeholders(user: str, needed: set[str]) -> None:
    values = dict.fromkeys(needed, "x")
    try:
        user.format_map(values)
    except (KeyError, IndexError, ValueError) as exc:
        raise DomainError(
            f"user text: unknown or malformed placeholder ({exc}); use {sorted(needed)}, "
            "and double any other brace"
        ) from None
    missing = [n for n in sorted(needed) if "{" + n + "}" not in user]
    if missing:
        raise DomainError(f"user text must contain {', '.join('{' + m + '}' for m in missing)}")


@transaction.atomic
def create_version(
    *,
    name: str,
    kind: str,
    system: str,
    user: str,
    options: list[str],
    revision: str = "",
    created_by=None,
) -> JudgeTemplate:
    """The next version of ``name`` (the latest one when the content is unchanged)."""
    _check(kind, user, options, revision)
    sha = digest(kind, system, user, options, revision)
    latest = JudgeTemplate.objects.filter(name=name).order_by("-version").first()
    if latest is not None:
        if latest.kind != kind:
            raise DomainError(f"template {name!r} is a {latest.kind} template")
        if latest.sha256 == sha:
            return latest
    try:
        with transaction.atomic():
            return JudgeTemplate.objects.create(
                name=name,
                version=(latest.version + 1) if latest else 1,
                kind=kind,
                system=system,
                user=user,
                options=options,
                revision=revision,
                sha256=sha,
                created_by=created_by,
            )
    except IntegrityError:  # a concurrent writer took the number
        raise DomainError(f"template {name!r} changed meanwhile; try again") from None


def ensure_defaults() -> dict[str, JudgeTemplate]:
    """The shipped templates (version 1 created on first use), latest version by name."""
    out = {}
    for name, spec in DEFAULTS.items():
        latest = JudgeTemplate.objects.filter(name=name).order_by("-version").first()
        out[name] = latest or create_version(name=name, **spec)
    return out


def prompt_text(messages: list[dict]) -> str:
    """A conversation as plain text for the judge (one ``Role: content`` block per turn)."""
    if len(messages) == 1 and messages[0].get("role") == "user":
        return str(messages[0].get("content", ""))
    return "\n\n".join(
        f"{str(m.get('role', 'user')).capitalize()}: {m.get('content', '')}" for m in messages
    )


def render(
    template: JudgeTemplate, *, prompt: str, response_a: str, response_b: str, principle: str = ""
) -> list[dict]:
    """The chat messages of one question."""
    values = {"prompt": prompt, "response_a": response_a, "response_b": response_b}
    if template.kind == JudgeTemplate.Kind.PRINCIPLE:
        values["principle"] = principle
    return [
        {"role": "system", "content": template.system},
        {"role": "user", "content": template.user.format_map(values)},
    ]


def render_critique(
    template: JudgeTemplate, *, prompt: str, response: str, principle: str
) -> list[dict]:
    """The chat messages asking for the critique of ``response`` against ``principle``."""
    values = {"prompt": prompt, "response": response, "principle": principle}
    return [
        {"role": "system", "content": template.system},
        {"role": "user", "content": template.user.format_map(values)},
    ]


def revision_request(template: JudgeTemplate, critique_messages: list[dict], critique: str):
    """The conversation asking for the revision: the critique request, the judge's critique,
    then the template's revision request."""
    return [
        *critique_messages,
        {"role": "assistant", "content": critique},
        {"role": "user", "content": template.revision},
    ]
