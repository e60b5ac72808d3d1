"""The reference agent workflow of FM-043, a patient navigator, in two builds.

Stages: input processing (validation and a classifier chat completion), retrieval
(embeddings from the provider, k-nearest chunks over PostgreSQL + pgvector), a fan-out
of 3-12 sub-questions (chat completions), and a strategy synthesis (one Anthropic
messages call). `bounded.navigator.unguarded` is the code as FM-043 found it;
`bounded.navigator.guarded` is the same workflow through a `ConcurrencyManager`.
Both need the official ``openai`` and ``anthropic`` SDKs; import the builds by module.
"""

from bounded.navigator.workflow import Answer, Chunk, Request, normalise

__all__ = ["Answer", "Chunk", "Request", "normalise"]
