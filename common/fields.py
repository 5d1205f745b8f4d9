"""Serializer fields any API needs."""

from __future__ import annotations

from rest_framework import serializers


class RelatedId(serializers.PrimaryKeyRelatedField):
    """``PrimaryKeyRelatedField`` for which an id no integer column holds (``1e999``, which JSON
    parses as infinity) is an unknown id (400), not an ``OverflowError`` (500)."""

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except OverflowError:
            self.fail("does_not_exist", pk_value=data)
