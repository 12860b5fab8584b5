"""Argument checks for public functions, each raising ValueError with one "expected ..., got ..." message.

Convention: check input at public functions only, with these helpers; `assert` only for internal
invariants. A bool is never accepted where an integer or a number is expected (`True` is an int to Python).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum] (either bound optional); bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected {name} to be an integer{_bounds(minimum, maximum)}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"expected {name} to be an integer{_bounds(minimum, maximum)}, got {value!r}")
    return value


def check_number(
    name: str, value: Any, low: float | None = None, high: float | None = None, *, open_low: bool = False,
    open_high: bool = False,
) -> float:
    """`value` as a float inside the interval given by low / high (closed unless open_low / open_high)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok:
        value = float(value)
        ok = value == value  # not NaN
        if low is not None:
            ok = ok and (value > low if open_low else value >= low)
        if high is not None:
            ok = ok and (value < high if open_high else value <= high)
    if not ok:
        interval = ""
        if low is not None or high is not None:
            left = "(" if open_low or low is None else "["
            right = ")" if open_high or high is None else "]"
            interval = f" in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"expected {name} to be a number{interval}, got {value!r}")
    return value


def check_fraction(name: str, value: Any) -> float:
    """A share strictly between 0 and 1."""
    return check_number(name, value, 0.0, 1.0, open_low=True, open_high=True)


def check_probability(name: str, value: Any) -> float:
    """A probability in [0, 1]."""
    return check_number(name, value, 0.0, 1.0)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """`value` if it is one of `choices`."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"expected {name} to be one of {' | '.join(map(str, choices))}, got {value!r}")
    return value


def check_index(name: str, value: Any, stop: int, where: str = "") -> int:
    """`value` as an index in [0, stop): TypeError for a non-integer (as Python's own indexing), IndexError outside;
    `where` (e.g. "for <file>") ends the message."""
    try:
        index = operator.index(value)
    except TypeError:
        raise TypeError(f"expected {name} (int), got {type(value).__name__}") from None
    if not 0 <= index < stop:
        raise IndexError(f"expected {name} in [0, {stop}){' ' + where if where else ''}, got {index}")
    return index


def check_shape(name: str, shape: Sequence[int], pattern: Sequence[int | str | None]) -> None:
    """`shape` against a pattern such as ("B", 1, "H", "W"): ints must match, names and None match any size.

    The same name used twice must have the same size both times.
    """
    shape = tuple(int(s) for s in shape)
    sizes: dict[str, int] = {}
    ok = len(shape) == len(pattern)
    for size, want in zip(shape, pattern) if ok else ():
        if isinstance(want, int):
            ok = ok and size == want
        elif isinstance(want, str):
            ok = ok and sizes.setdefault(want, size) == size
    if not ok:
        wanted = ", ".join("*" if p is None else str(p) for p in pattern)
        raise ValueError(f"expected {name} of shape ({wanted}), got {shape}")


def check_same_shape(name_a: str, a: Sequence[int], name_b: str, b: Sequence[int]) -> None:
    """Two shapes that must be equal."""
    if tuple(a) != tuple(b):
        raise ValueError(f"expected {name_a} and {name_b} of the same shape, got {tuple(a)} and {tuple(b)}")


def _bounds(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
