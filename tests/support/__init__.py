"""Helpers the tests import: servers they start, a fake clock, a fake BigQuery, fault-test load.

Fixtures and pytest hooks live in the ``conftest.py`` files; everything they and the tests
call lives here, one module per job.
"""
