"""Benchmark of GET /api/me against a floor and peer designs (see bench/README.md)."""
