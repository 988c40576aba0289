"""A clock the test moves by hand, for code that takes ``clock=`` (the circuit breaker, the near cache)."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock the test moves by hand (``clock.now += 1.0``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
