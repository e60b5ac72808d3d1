"""A provider-independent token estimate, used before a call to reserve tokens.

Real tokenizers differ by model; the estimate only has to be close, because the
reservation is settled with the provider's real usage after the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["estimate_message_tokens", "estimate_tokens", "message_text"]


def estimate_tokens(text: str) -> int:
    """Tokens in `text`: each whitespace-separated word counts ceil(len/4), at least 1."""
    return sum((len(word) + 3) // 4 for word in text.split())


def message_text(messages: Iterable[Mapping[str, Any]], system: Any = None) -> str:
    """The text of a chat request: the system prompt and every message's content, joined.

    Content may be a string or a list of blocks (``{"type": "text", "text": ...}``);
    anything else (a message that is not a mapping, a block without text) is skipped.
    """
    parts: list[str] = []
    contents = [m.get("content") for m in messages if isinstance(m, Mapping)]
    for content in ([system] if system is not None else []) + contents:
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, Mapping) and isinstance(block.get("text"), str):
                    parts.append(block["text"])
    return "\n".join(parts)


def estimate_message_tokens(messages: Iterable[Mapping[str, Any]], system: Any = None) -> int:
    """`estimate_tokens` of `message_text(messages, system)`."""
    return estimate_tokens(message_text(messages, system))
