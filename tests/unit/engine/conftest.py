"""Fixtures of the engine's unit tests."""

from tests.unit.checkpoint.conftest import journal_key  # noqa: F401
