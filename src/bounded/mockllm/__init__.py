"""A mock OpenAI/Anthropic provider for offline demos, tests and load runs.

Start it in-process with ``async with MockLLMServer(MockConfig(...)) as srv`` or from the
command line with ``bounded mock-llm``. Needs the ``server`` extra (starlette, uvicorn).
"""

from __future__ import annotations

from bounded._extras import import_extra

with import_extra("bounded.mockllm"):
    from bounded.mockllm.app import MockState, create_app
    from bounded.mockllm.config import MockConfig
    from bounded.mockllm.server import MockLLMServer

__all__ = ["MockConfig", "MockLLMServer", "MockState", "create_app"]
