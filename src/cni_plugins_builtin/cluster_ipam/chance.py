"""Random choices for allocation, without importing ``random``.

``random`` costs a cold exec ~2 ms (it loads ``hashlib``'s sha512, ``math``,
``bisect``, ``warnings``...) for the four calls allocation makes; its C core
``_random`` (the same Mersenne Twister, seeded from ``os.urandom``) is what
it wraps. Like ``random``, the generator is reseeded in a forked child: the
warm server's workers must not all guess the same addresses.
"""

from __future__ import annotations

import _random
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence, TypeVar

    _T = TypeVar("_T")

_rng = _random.Random()  # seeded from os.urandom
os.register_at_fork(after_in_child=_rng.seed)


def below(n: int) -> int:
    """Uniform in ``[0, n)`` (``random.randrange(n)``); ``n`` must be positive."""
    if n <= 0:
        raise ValueError(f"empty range for below({n})")
    bits = n.bit_length()
    value = _rng.getrandbits(bits)
    while value >= n:
        value = _rng.getrandbits(bits)
    return value


def between(low: int, high: int) -> int:
    """Uniform in ``[low, high]`` (``random.randint``)."""
    return low + below(high - low + 1)


def choice(items: Sequence[_T]) -> _T:
    """One of ``items`` (``random.choice``); IndexError when there are none."""
    if not items:
        raise IndexError("cannot choose from an empty sequence")
    return items[below(len(items))]


def fraction() -> float:
    """Uniform in ``[0, 1)`` (``random.random``)."""
    return float(_rng.random())
