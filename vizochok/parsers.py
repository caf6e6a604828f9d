"""Request body parsers."""

import sys
from collections.abc import Mapping
from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, reporting nesting too deep and integers too long for Python's
    parser as invalid JSON in plain words."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError("JSON parse error - nesting is too deep.") from error
        except ParseError as error:
            # An integer beyond Python's digit limit raises a plain ValueError whose message
            # advises calling sys.set_int_max_str_digits(), which means nothing to a client.
            if "sys.set_int_max_str_digits" in str(error.detail):
                raise ParseError(
                    "JSON parse error - a number has more than "
                    f"{sys.get_int_max_str_digits()} digits."
                ) from error
            raise
