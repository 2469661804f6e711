"""The six-bucket typicality scale of Holtzman et al.'s MTurk form, with our own short help."""

from __future__ import annotations

SCALE: tuple[tuple[int, str, str], ...] = (
    (1, "Invalid", "not real text: broken, garbled or meaningless"),
    (2, "Rare", "could be real, but very strange or unlikely"),
    (3, "Specific", "plausible, but tied to an unusual topic, source or situation"),
    (4, "Average", "ordinary text, neither odd nor especially typical"),
    (5, "Typical", "the kind of text you would expect to come across"),
    (6, "Very typical", "exactly what you would expect a person to write"),
)
"""(value, label, help) for each bucket; labels as in the form, help texts our own."""

LOWEST, HIGHEST = SCALE[0][0], SCALE[-1][0]


def scale_json() -> list[dict]:
    return [{"value": value, "label": label, "help": help_text} for value, label, help_text in SCALE]


def is_rating(value) -> bool:
    """An integer 1..6; bools (a JSON true) and floats (3.0) are not ratings."""
    return type(value) is int and LOWEST <= value <= HIGHEST
