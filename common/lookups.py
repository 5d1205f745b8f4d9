"""SQL ``LIKE`` in MLflow's meaning, run by the database's own matcher: ``%`` any run of
characters, ``_`` one character, every other character literal (``\\`` included); ``Like`` is
case-sensitive, ``ILike`` is not. The databases' matchers do not backtrack without bound (a
regex built from the pattern did: ``'%%%%%%%!'`` took seconds).

Used as conditions: ``queryset.filter(Like(F("name"), "rm-%"))``; not registered on fields."""

from __future__ import annotations

import re

from django.db.models import Lookup

_PERCENT_RUN = re.compile(r"%{2,}")
_LIKE_ESCAPES = str.maketrans({"\\": "\\\\"})
_GLOB = str.maketrans({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"})


def _collapsed(pattern: str) -> str:
    return _PERCENT_RUN.sub("%", pattern)


def like_pattern(pattern: str) -> str:
    """The pattern for ``LIKE … ESCAPE '\\'`` (a literal backslash doubled)."""
    return _collapsed(pattern).translate(_LIKE_ESCAPES)


def glob_pattern(pattern: str) -> str:
    """The same pattern for SQLite's ``GLOB`` (case-sensitive, unlike SQLite's ``LIKE``)."""
    return _collapsed(pattern).translate(_GLOB)


class Like(Lookup):
    """``lhs LIKE pattern``, case-sensitive on every database."""

    lookup_name = "mlflow_like"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} LIKE %s ESCAPE '\\'", [*params, like_pattern(self.rhs)]

    def as_sqlite(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} GLOB %s", [*params, glob_pattern(self.rhs)]


class ILike(Like):
    """``lhs ILIKE pattern``: case-insensitive (on SQLite, for ASCII letters)."""

    lookup_name = "mlflow_ilike"

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"UPPER({lhs}) LIKE UPPER(%s) ESCAPE '\\'", [*params, like_pattern(self.rhs)]

    def as_postgresql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} ILIKE %s ESCAPE '\\'", [*params, like_pattern(self.rhs)]

    def as_sqlite(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} LIKE %s ESCAPE '\\'", [*params, like_pattern(self.rhs)]
