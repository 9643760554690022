"""The start-up heap is frozen out of the cyclic GC while the app runs, and handed back at shutdown."""

from __future__ import annotations

import gc

import pytest
from mcp_api.app import create_app

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("enabled", [True, False])
async def test_lifespan_freezes_the_startup_heap(settings, enabled):
    settings.gc_freeze = enabled
    app = create_app(settings)
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert (gc.get_freeze_count() > 10_000) is enabled
    assert gc.get_freeze_count() == 0
