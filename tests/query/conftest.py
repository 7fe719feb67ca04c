"""The query API in this process over the session store (test_metrics_api builds its own, to reach its cache)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from llmscope.settings import Settings
from llmscope.storage import Store
from tests.conftest import query_client


@pytest.fixture(scope="session")
async def api(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with query_client(settings, store) as client:
        yield client
