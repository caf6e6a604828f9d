"""The demo conversation's terminal output."""

import pytest

from demo.conversation import _money


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1.005, "1.01 грн"), (45.9, "45.90 грн"), (10, "10.00 грн"), (0.0, "0.00 грн"), (None, "")],
)
def test_money_rounds_halves_up(value, shown):
    assert _money(value) == shown
