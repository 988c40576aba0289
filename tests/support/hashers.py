"""A password hasher that counts the hashes it computes (a verify computes one), for timing and limit tests."""

from __future__ import annotations

import threading

from django.contrib.auth.hashers import MD5PasswordHasher


class CountingHasher(MD5PasswordHasher):
    computed = 0
    lock = threading.Lock()

    def encode(self, password, salt):  # type: ignore[no-untyped-def]
        with type(self).lock:  # thread-safe: the limiter tests hash from many threads at once
            type(self).computed += 1
        return super().encode(password, salt)
