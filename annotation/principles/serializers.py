"""Serializers for principle sets and principles."""

from __future__ import annotations

from rest_framework import serializers

from annotation.models import (
    Principle,
    PrincipleSet,
)


class PrincipleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Principle
        fields = ["id", "principle_set", "key", "title", "text", "section", "kind", "authority",
                  "declared_priority", "position"]  # fmt: skip
        read_only_fields = fields


class PrincipleWriteSerializer(serializers.Serializer):
    key = serializers.SlugField(max_length=120)
    title = serializers.CharField(max_length=300)
    text = serializers.CharField(required=False, allow_blank=True, default="")
    section = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=Principle.Kind.choices, default=Principle.Kind.GUIDELINE)
    authority = serializers.ChoiceField(
        choices=Principle.Authority.choices, default=Principle.Authority.USER
    )
    declared_priority = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, allow_null=True, default=None
    )


class PrincipleUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=300, required=False)
    text = serializers.CharField(required=False, allow_blank=True)
    section = serializers.CharField(max_length=300, required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=Principle.Kind.choices, required=False)
    authority = serializers.ChoiceField(choices=Principle.Authority.choices, required=False)
    declared_priority = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, allow_null=True
    )


class PrincipleSetSerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True)
    principle_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = PrincipleSet
        fields = ["id", "name", "version", "label", "status", "parent", "description", "source",
                  "created_at", "published_at", "principle_count"]  # fmt: skip
        read_only_fields = fields


class PrincipleSetDetailSerializer(PrincipleSetSerializer):
    principles = PrincipleSerializer(many=True, read_only=True)

    class Meta(PrincipleSetSerializer.Meta):
        fields = [*PrincipleSetSerializer.Meta.fields, "principles"]
        read_only_fields = fields


class PrincipleSetCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    source = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    principles = PrincipleWriteSerializer(many=True, allow_empty=False, max_length=1000)
    publish = serializers.BooleanField(default=False)


class PrincipleChangeSerializer(serializers.Serializer):
    key = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField())


class PrincipleSetDiffSerializer(serializers.Serializer):
    base = serializers.CharField()
    other = serializers.CharField()
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    changed = PrincipleChangeSerializer(many=True)
