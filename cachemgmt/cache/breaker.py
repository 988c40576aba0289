"""The circuit breaker in front of Redis: after repeated failures, requests skip the cache."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("cachemgmt.cache")


@dataclass
class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures; one probe after ``cooldown``."""

    threshold: int = 2
    cooldown: float = 5.0
    clock: Callable[[], float] = time.monotonic
    state: str = "closed"
    failures: int = 0
    opened_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self) -> bool:
        with self._lock:
            if self.state == "closed":
                return True
            if self.state == "open" and self.clock() - self.opened_at >= self.cooldown:
                self._set("half_open")
                return True
            return False

    def record_success(self) -> bool:
        """Returns True when this success closed a circuit that was not closed."""
        with self._lock:
            self.failures = 0
            if self.state != "closed":
                self._set("closed")
                return True
            return False

    def record_failure(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if self.state == "half_open" or (self.state == "closed" and self.failures >= self.threshold):
                self.opened_at = self.clock()
                self._set("open", exc)

    def _set(self, state: str, exc: BaseException | None = None) -> None:
        previous, self.state = self.state, state
        if state == "open":
            logger.warning(
                "cache circuit opened: serving from the database",
                extra={"previous": previous, "error": type(exc).__name__ if exc else None},
            )
        elif state == "closed":
            logger.warning("cache circuit closed: cache back in use", extra={"previous": previous})
