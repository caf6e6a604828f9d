"""Serializer building blocks shared by the API views."""

from typing import Any

from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that rejects fields it does not declare.

    A misspelt field (``product_url`` for ``products_url``) would otherwise be ignored and
    the request would look successful.
    """

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, dict):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs
