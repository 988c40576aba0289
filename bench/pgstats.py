"""Making PostgreSQL 15 backends publish their statistics now (statement counting, see bench/README.md).

A backend publishes its counters at most once a second, an idle one within 10 s, and a transaction
that touched no relation leaves its commit uncounted until the next publication. Reading one catalog
row gives the backend pending statistics, so ``pg_stat_force_next_flush()`` then publishes all of
them, this statement's own commit included (it counts as exactly one transaction).
"""

FLUSH_SQL = "SELECT pg_stat_force_next_flush() FROM (SELECT 1 FROM pg_catalog.pg_namespace LIMIT 1) AS s"
