"""The post-commit event bus: the one way a write announces itself to side effects.

A service calls ``publish("judgment.created", project_id=…, …)`` inside its transaction; each
handler ``subscribe``d to that event runs once the transaction commits (at once outside one),
so a rolled-back write announces nothing. Handlers run isolated (``on_commit(robust=True)``):
one that fails is logged and neither undoes the write nor stops the others. Subscriptions are
made once per process, in an ``AppConfig.ready``.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable

from django.db import transaction

Handler = Callable[[str, dict], None]
_handlers: dict[str, list[Handler]] = defaultdict(list)


def subscribe(handler: Handler, *events: str) -> None:
    """Call ``handler(event, payload)`` after each commit that published one of ``events``."""
    for event in events:
        if handler not in _handlers[event]:
            _handlers[event].append(handler)


def unsubscribe(handler: Handler, *events: str) -> None:
    for event in events:
        if handler in _handlers[event]:
            _handlers[event].remove(handler)


def publish(event: str, **payload: object) -> None:
    """Announce ``event`` to its handlers once the current transaction commits."""
    for handler in tuple(_handlers.get(event, ())):
        run = functools.partial(handler, event, dict(payload))
        # on_commit(robust=True) names the callable when it logs a failure: give it a name.
        run.__qualname__ = f"{getattr(handler, '__qualname__', repr(handler))}({event!r})"
        transaction.on_commit(run, robust=True)
