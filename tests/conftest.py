"""Shared test configuration: every random generator in the suite is seeded and prints its seed;
`cluster` is three node processes on 127.0.0.1, stopped by their ids after the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from support.processes import ProcessCluster

# Hypothesis runs derandomized (a fixed seed per test), so the suite is deterministic; set
# EVX_HYPOTHESIS_PROFILE=explore to search with fresh random seeds and more examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=2_000, print_blob=True)
settings.load_profile(os.environ.get("EVX_HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"hypothesis profile: {settings._current_profile}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    """Three `evx node` processes (a module may define its own, e.g. with snapshots)."""
    cluster = ProcessCluster(tmp_path)
    cluster.start_all()
    yield cluster
    cluster.stop_all()
