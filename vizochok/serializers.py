"""Serializer building blocks shared by the API views."""

import math
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, cast

from django.core import validators
from rest_framework import serializers


class StrictInputSerializer(serializers.Serializer):
    """An input serializer that rejects fields it does not declare.

    A misspelt field (``product_url`` for ``products_url``) would otherwise be ignored and
    the request would look successful.
    """

    def to_internal_value(self, data: Any) -> Any:
        # Unknown fields are reported together with the errors of the declared ones.
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors = {name: ["Unknown field."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as error:
            if errors and isinstance(error.detail, dict):
                raise serializers.ValidationError({**error.detail, **errors}) from error
            raise
        if errors:
            raise serializers.ValidationError(errors)
        return value


_JSON_TYPE_NAMES = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}


def _json_type(data: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(data), "a string" if isinstance(data, str) else "an object")


class StringField(serializers.CharField):
    """A ``CharField`` that accepts only JSON strings.

    DRF's ``CharField`` turns ``5`` into ``"5"`` and ``1e999`` into ``"inf"``. A client that
    sends a number where text belongs has a bug, so it gets an error instead.
    """

    default_error_messages = {"not_a_string": "Expected a string, got {json_type}."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string", json_type=_json_type(data))
        return cast(str, super().to_internal_value(data))


class IdentifierField(StringField):
    """A ``StringField`` for ids that the merchant issued and receives back, kept as sent.

    A user token is signed over the user id as sent, and webhooks pass the ids on to the
    merchant. A trimmed id would fail the token check or name another shopper or store, so
    surrounding whitespace is rejected instead.
    """

    default_error_messages = {"edge_whitespace": "Must not start or end with whitespace."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not value.strip() and not self.allow_blank:
            self.fail("blank")
        if value != value.strip():
            self.fail("edge_whitespace")
        return value


class StrictChoiceField(serializers.ChoiceField):
    """A ``ChoiceField`` whose choices are strings and that accepts only JSON strings.

    DRF's ``ChoiceField`` compares ``str(data)`` with the choices, so ``1`` and ``["ru"]``
    would get a message quoting Python's text for them, such as ``"['ru']"``.
    """

    default_error_messages = {"not_a_string": "Expected a string, got {json_type}."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string", json_type=_json_type(data))
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An ``IntegerField`` that accepts only JSON integers.

    DRF's ``IntegerField`` turns ``"5"`` and ``5.0`` into ``5``, and reads ``true`` as 1.
    """

    default_error_messages = {"not_an_integer": "Expected an integer, got {json_type}."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("not_an_integer", json_type=_json_type(data))
        return cast(int, super().to_internal_value(data))


class StrictFloatField(serializers.FloatField):
    """A ``FloatField`` that accepts only JSON numbers, not strings or booleans."""

    default_error_messages = {"not_a_number": "Expected a number, got {json_type}."}

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("not_a_number", json_type=_json_type(data))
        return cast(float, super().to_internal_value(data))


class StrictDecimalField(serializers.DecimalField):
    """A ``DecimalField`` that accepts only finite JSON numbers and keeps their digits.

    DRF's ``DecimalField`` also reads ``"0.5"``, ``true`` and ``1e999``. This field rejects
    them, and turns a float into the decimal that the JSON text wrote, so ``0.1`` becomes
    ``Decimal("0.1")``. Precision and range are left to ``max_digits``, ``decimal_places``
    and the validators, or to the service that stores the value.

    NOTE: the JSON parser reads numbers into floats first, so a number with more digits than
    a float keeps arrives rounded: ``1.999999999999999999`` becomes 2.0 and ``1e-400`` 0.0.
    """

    default_error_messages = {
        "not_a_number": "Expected a number, got {json_type}.",
        "not_finite": "Expected a finite number.",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", None)
        kwargs.setdefault("decimal_places", None)
        kwargs.setdefault("coerce_to_string", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("not_a_number", json_type=_json_type(data))
        if isinstance(data, float) and not math.isfinite(data):
            self.fail("not_finite")
        # repr() of a float is the shortest text that reads back as it, which is what a
        # JSON encoder writes.
        value = Decimal(repr(data)) if isinstance(data, float) else Decimal(data)
        return cast(Decimal, self.quantize(self.validate_precision(value)))


class _DocumentedMaxLength(validators.MaxLengthValidator):
    def __call__(self, value: Any) -> None:
        pass


class _DocumentedMinValue(validators.MinValueValidator):
    def __call__(self, value: Any) -> None:
        pass


class _DocumentedMaxValue(validators.MaxValueValidator):
    def __call__(self, value: Any) -> None:
        pass


_DOCUMENTED_BOUNDS: dict[type, type[validators.BaseValidator]] = {
    validators.MaxLengthValidator: _DocumentedMaxLength,
    validators.MinValueValidator: _DocumentedMinValue,
    validators.MaxValueValidator: _DocumentedMaxValue,
}


def documented_bounds(
    model_validators: Iterable[Callable[[Any], None]],
) -> list[validators.BaseValidator]:
    """Copy the length and range validators in ``model_validators`` as ones that never fail.

    drf-spectacular turns a field's validators into ``maxLength``, ``minimum`` and
    ``maximum`` in the OpenAPI document. A serializer whose values a service checks adds
    these copies to its fields, so the document shows the bounds while the service alone
    rejects a value, with its own messages.
    """
    copies: list[validators.BaseValidator] = []
    for validator in model_validators:
        documented = _DOCUMENTED_BOUNDS.get(type(validator))
        if documented is not None:
            assert isinstance(validator, validators.BaseValidator)
            copies.append(documented(validator.limit_value))
    return copies
