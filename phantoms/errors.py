"""The one error type for a user's mistake.

Messages read ``name = value is outside [lo, hi]``; the CLI prints them as one line, exit code 2.
"""

from __future__ import annotations


class SpecError(ValueError):
    """A parameter given by the user is invalid: names the parameter, the value and what is allowed."""


def check_range(name: str, value: float, lo: float, hi: float) -> float:
    """Return ``value`` if ``lo <= value <= hi``, else raise :class:`SpecError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{name} = {value!r} is not a number; allowed range [{lo:g}, {hi:g}]") from None
    if not (lo <= number <= hi):  # also catches NaN
        raise SpecError(f"{name} = {value!r} is outside [{lo:g}, {hi:g}]")
    return number


def check_choice(name: str, value: object, choices: tuple) -> object:
    """Return ``value`` if it is one of ``choices``, else raise :class:`SpecError`."""
    if value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise SpecError(f"{name} = {value!r} is not one of {{{allowed}}}")
    return value
