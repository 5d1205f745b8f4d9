"""System checks that need the database (``migrate`` runs them, as does
``manage.py check --database default``)."""

from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning
from django.db import connections

from annotation.workspace import pg


@register(Tags.database)
def autovacuum_is_on(app_configs, databases=None, **kwargs) -> list[CheckWarning]:
    """The lease statements' plans need current statistics, which autovacuum keeps. With it
    off, "not already done by this annotator" comes to be checked by scanning the annotator's
    whole history once per candidate task: measured, next-task went from 6 ms to 1 s after
    950 judgments by one annotator."""
    messages = []
    for alias in databases or ():
        if pg.autovacuum_is_off(connections[alias]):
            messages.append(
                CheckWarning(
                    f"PostgreSQL ({alias}) runs with autovacuum off: statistics go stale "
                    "and handing out tasks slows down as judgments accumulate.",
                    hint="Turn autovacuum on (PostgreSQL's default), or ANALYZE the "
                    "annotation tables regularly.",
                    id="annotation.W001",
                )
            )
    return messages
