"""Shared fixtures for the backtester tests: the real sample stocks as a panel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.data.barstore import BarStore
from engine.data.importer import import_bars
from engine.data.panel import Panel
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def sample_panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    """../shared/data/stocks/sample_daily_2013_2018.csv through the CSV import path, as float64."""
    path = shared_data("stocks", "sample_daily_2013_2018.csv")
    store = BarStore(Path(tmp_path_factory.mktemp("bars")), "csv")
    report = import_bars([path], store)
    assert report.rows_rejected == 0, report.errors[:5]
    return store.load(dtype=np.float64)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A Dask client on an in-process cluster (one worker, two threads): the search path, started fast."""
    from dask.distributed import Client

    c = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    yield c
    c.close()
