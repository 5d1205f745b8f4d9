"""The API's FilterSet base: integer query parameters are whole numbers a database column can
hold, so ``?project=99999999999999999999999``, ``?project=1.5`` or ``?project=abc`` is a 400
naming the parameter (not a 500 from the database driver, nor a silent rounding)."""

from __future__ import annotations

import django_filters as df
from django import forms
from django.db import models

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class IntegerFilter(df.NumberFilter):
    """A whole number within a 64-bit column's range."""

    field_class = forms.IntegerField

    def __init__(self, *args, min_value: int = INT64_MIN, max_value: int = INT64_MAX, **kwargs):
        super().__init__(*args, min_value=min_value, max_value=max_value, **kwargs)


class IdFilter(IntegerFilter):
    """A row id (a positive whole number), e.g. ``project`` through a relation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=1, **kwargs)


_INTEGER_FIELDS = [
    field for field in df.FilterSet.FILTER_DEFAULTS if issubclass(field, models.IntegerField)
]


class FilterSet(df.FilterSet):
    """``django_filters.FilterSet`` whose generated filters on integer columns are
    ``IntegerFilter`` (foreign keys stay model choices: an unknown id is already a 400)."""

    FILTER_DEFAULTS = {
        **df.FilterSet.FILTER_DEFAULTS,
        **{field: {"filter_class": IntegerFilter} for field in _INTEGER_FIELDS},
    }
