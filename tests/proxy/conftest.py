"""Fixtures the proxy's format tests share."""

from __future__ import annotations

import pytest

from tests.factories import World


@pytest.fixture
def claude(world: World) -> World:
    """Model `claude-test` ($3 and $15 per million) served by an anthropic deployment on the fake
    upstream's Anthropic API; `gpt-test` (openai) stays."""
    world.add_model(
        "claude-test",
        [
            {
                "provider": "anthropic",
                "base_url": world.upstream.root_url,
                "model": "claude-fake",
                "region": "us",
                "api_key": "sk-ant-upstream",
            }
        ],
        price={"input_per_mtok": "3", "output_per_mtok": "15"},
    )
    return world
