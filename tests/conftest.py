"""Shared test configuration: every random generator in the suite is seeded and prints its seed."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

# Hypothesis runs derandomized (a fixed seed per test), so the suite is deterministic; set
# EVX_HYPOTHESIS_PROFILE=explore to search with fresh random seeds and more examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=2_000, print_blob=True)
settings.load_profile(os.environ.get("EVX_HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"hypothesis profile: {settings._current_profile}"
