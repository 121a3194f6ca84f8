"""Input validation shared by the math core and the rewards, so every entry point fails the same clear way."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_finite(values: ArrayLike, name: str, *, ndim: int | tuple[int, ...] | None = None) -> NDArray[np.float64]:
    """Return `values` as a float array, or raise naming the field and the first bad position."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected numbers, got {type(values).__name__} ({error})") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if array.ndim not in allowed:
            raise ValueError(f"{name}: expected an array with {' or '.join(map(str, allowed))} "
                             f"dimension(s), got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        position = where[0] if len(where) == 1 else where
        raise ValueError(f"{name}: value {array[where]} at index {position} is not finite "
                         f"({int(bad.sum())} non-finite value(s) in all); NaN or infinite rewards "
                         "are reported, never averaged: drop or fix them first")
    return array


def as_positive_ints(values: ArrayLike, name: str) -> NDArray[np.int64]:
    array = np.atleast_1d(np.asarray(values))
    if array.size == 0:
        raise ValueError(f"{name}: expected at least one value")
    if not np.issubdtype(array.dtype, np.number) or np.any(array != np.round(array)):
        raise ValueError(f"{name}: expected whole numbers, got {array.tolist()}")
    ints = array.astype(np.int64)
    if np.any(ints < 1):
        raise ValueError(f"{name}: every value must be >= 1, got {ints.tolist()}")
    return ints
