"""`bounded audit` on real code: precision per rule against hand labels.

Downloads the published wheels of pinned releases of open-source asyncio projects (agent
frameworks, LLM SDK users, async services) from PyPI into a scratch folder outside the
repository (``BENCH_AUDIT_CORPUS``, default ``/tmp/bounded-audit-corpus``), unpacks them,
runs the audit on each (default rules, no configuration) and compares every finding with
the hand labels in ``bench/audit_labels.json`` (true or false positive, with a note). No
third-party code is stored in the repository: only the labels.

A finding without a label is counted and listed: after a rule change, read it and add its
label. A finding of an opt-in rule (off by default, e.g. BND011) takes the label of its
parent rule's finding on the same line (the same place, the same fault claimed on weaker
evidence), and is scored apart: the opt-in tier is not part of the default figures. Run
with ``python -m bench.audit_corpus`` (needs network access to PyPI once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

from bench._harness import Row, Section, Target
from bounded.audit import RULES, audit

PROJECTS: tuple[tuple[str, str], ...] = (
    ("aiogram", "3.21.0"),
    ("autogen-agentchat", "0.7.2"),
    ("autogen-core", "0.7.2"),
    ("browser-use", "0.6.1"),
    ("crewai", "0.165.1"),
    ("langchain-core", "0.3.74"),
    ("langgraph", "0.6.5"),
    ("litellm", "1.75.8"),
    ("llama-index-core", "0.13.2"),
    ("mcp", "1.13.0"),
    ("openai-agents", "0.2.8"),
    ("pydantic-ai-slim", "0.7.2"),
    ("semantic-kernel", "1.35.3"),
    # held out: read only after the heuristics above were settled (see docs/audit.md)
    ("chainlit", "2.12.0"),
    ("haystack-ai", "3.4.1"),
    ("pipecat-ai", "1.14.0"),
    # held out in round 2, read with the rules frozen, then development (see docs/audit.md)
    ("graphiti-core", "0.31.2"),
    ("mem0ai", "2.2.1"),
    ("crawl4ai", "0.9.5"),
    ("ragas", "0.4.3"),
    # held out in round 3: chosen before any of their findings were seen, read once with
    # the rules frozen (commit 256df2b), then development (see docs/audit.md)
    ("instructor", "1.17.0"),
    ("fastmcp-slim", "4.1.6"),
    ("lightrag-hku", "1.5.7"),
    # held out in round 4: chosen before any of their findings were seen, read once with
    # the rules frozen (commit abb2b58) by a reader who had listed their faults first,
    # then development (see docs/audit.md)
    ("livekit-agents", "1.8.9"),
    ("python-telegram-bot", "22.8"),
    ("strands-agents", "1.62.0"),
    ("faststream", "0.7.8"),
    ("gpt-researcher", "0.15.1"),
    ("taskiq", "0.13.0"),
    # held out in round 5: chosen before any of their findings were seen, read once with
    # the rules frozen (commit 508532b) by a reader who had listed their faults first,
    # then development (see docs/audit.md)
    ("a2a-sdk", "1.3.0"),
    ("arq", "0.28.0"),
    ("crawlee", "1.11.0"),
    ("discord-py", "2.7.1"),
    ("mcp-agent", "0.2.6"),
    ("nonebot2", "2.5.0"),
    # held out in round 6: chosen before any of their findings were seen, read once with
    # the rules frozen (commit a31b81d) by a reader who had listed their faults first,
    # then development (see docs/audit.md)
    ("aiokafka", "0.14.0"),
    ("kopf", "1.45.2"),
    ("nats-py", "2.16.0"),
    ("procrastinate", "3.10.0"),
    ("sanic", "25.12.1"),
    ("slack-bolt", "1.30.0"),
    ("twitchio", "3.3.2"),
    # held out in round 7: chosen before any of their findings were seen, read once with
    # the rules frozen (commit be3c674) by a reader who had listed their faults first,
    # then development (see docs/audit.md)
    ("langroid", "0.69.16"),
    ("mcp-use", "1.7.1"),
    ("qdrant-client", "1.20.0"),
    ("saq", "0.26.4"),
    ("tortoise-orm", "1.1.9"),
    ("vkbottle", "4.11.0"),
    # held out in round 8: chosen before any of their findings were seen, read once with
    # the rules frozen (commit be4aecc) by a reader who had listed their faults first,
    # then development (see docs/audit.md)
    ("aio-pika", "10.2.1"),
    ("autogen-ext", "0.7.5"),
    ("beanie", "2.2.0"),
    ("piccolo", "1.38.0"),
    ("smolagents", "1.26.0"),
    ("weaviate-client", "4.24.1"),
    # held out in round 9: chosen before any of their findings were seen, read once with
    # the rules frozen (commit 638674d) by a reader who had listed their faults first,
    # then development (see docs/audit.md)
    ("scrapegraphai", "1.76.0"),
    ("kani", "1.10.0"),
    ("marvin", "3.2.7"),
    ("matrix-nio", "0.26.0"),
    ("mautrix", "0.21.1"),
    ("slixmpp", "1.17.0"),
    # held out in round 10: chosen and read for faults before any of their findings were
    # seen, read with the rules frozen at 638674d, then again with this release's rules
    # (f8c7d4d), changed after round 9 by someone who had not seen round 10
    ("swarms", "16.0.3"),
    ("fast-agent-mcp", "0.2.36"),
    ("paper-qa", "2026.8.12"),
    ("uagents", "0.26.1"),
    ("pyppeteer", "2.0.0"),
    ("python-socketio", "5.18.1"),
    # held out in round 11: chosen and read for faults by three readers before any of
    # their findings was seen, read with the rules frozen at f428ed0, then with this
    # release's rules, changed after round 10 by people who had not seen round 11
    ("camel-ai", "0.2.90"),
    ("mirascope", "2.8.2"),
    ("magentic", "0.41.1"),
    ("telethon", "1.45.0"),
    ("temporalio", "1.35.0"),
    ("neo4j", "6.4.1"),
    # held out in round 12: chosen and read for faults by three readers before the rules
    # were changed for round 11's misses, then read once with those rules frozen
    ("llama-stack", "0.2.12"),
    ("metagpt", "0.8.2"),
    ("e2b", "2.63.0"),
    ("aiobotocore", "3.10.0"),
    ("g4f", "8.8.6"),
    ("pydoll-python", "3.0.0"),
    # held out in round 13: chosen and read for faults by three readers before the rules
    # were changed for round 12's misses, then read once with those rules frozen
    ("openai", "3.57.0"),
    ("anthropic", "2.14.0"),
    ("asyncssh", "2.24.1"),
    ("aiortc", "1.16.0"),
    ("nodriver", "0.50.99"),
    ("pymilvus", "3.0.2"),
    # held out in round 14: chosen and read for faults by three readers, then read once
    # with the same rules as round 13 (no rule changed in between)
    ("google-genai", "3.6.1"),
    ("slack-sdk", "3.48.0"),
    ("ollama", "0.6.3"),
    ("chromadb", "1.5.9"),
    ("aiohttp", "3.14.5"),
    ("websockets", "17.4"),
    # held out in round 15: chosen and read for faults by three readers, then read once
    # with the rules of round 14 and once with the rules changed for rounds 13 and 14
    ("cohere", "7.3.1"),
    ("mistralai", "3.7.0"),
    ("langfuse", "5.0.4"),
    ("redis", "8.1.0"),
    ("elasticsearch", "9.5.1"),
    ("semantic-router", "1.1.1"),
    # held out in round 16: chosen and read for faults by three readers while the rules
    # were changed for round 15, then read once with those rules frozen
    ("litestar", "2.25.0"),
    ("agentops", "0.4.21"),
    ("faust-streaming", "0.15.3"),
    ("pinecone", "10.2.0"),
    ("discord-py-interactions", "5.16.0"),
    ("crewai-tools", "1.15.30"),
    # held out in round 17: chosen and read for faults by three readers while the rules
    # were changed for round 16, then read once with those rules frozen
    ("deepeval", "4.3.1"),
    ("openhands-ai", "0.9.8"),
    ("langsmith", "0.15.1"),
    ("gql", "4.4.0"),
    ("composio", "0.30.0"),
    ("jupyter-server", "2.21.1"),
    # held out in round 18: chosen and read for faults by three readers while the rules
    # were changed for round 17, then read once with those rules frozen
    ("opik", "2.2.122"),
    ("agent-framework-core", "1.23.0"),
    ("nemoguardrails", "0.24.1"),
    ("r2r", "3.6.6"),
    ("beeai-framework", "0.1.85"),
    ("guardrails-ai", "0.11.0"),
    # held out in round 19: chosen and read for faults by three readers while the rules
    # were changed for round 18, then read once with those rules frozen
    ("open-webui", "0.12.4"),
    ("bentoml", "1.4.40"),
    ("litserve", "0.2.19"),
    ("gradio", "6.31.0"),
    ("traceloop-sdk", "0.62.4"),
    # held out in round 20: chosen and read for faults by three readers while the rules
    # were changed for round 19, then read once with those rules frozen
    ("modal", "1.6.4"),
    ("hatchet-sdk", "1.43.1"),
    ("strawberry-graphql", "0.341.2"),
    ("motor", "3.7.1"),
    ("apscheduler", "3.11.3"),
    # held out in round 21: chosen and read for faults by three readers while the rules
    # were changed for round 20, then read once with those rules frozen
    ("arize-phoenix", "20.26.1"),
    ("ag2", "1.2.1"),
    ("lmnr", "0.8.2"),
    ("khoj", "1.42.10"),
    ("vanna", "2.0.2"),
    # held out in round 22: chosen and read for faults by three readers while the rules
    # were changed for round 21, then read once with those rules frozen
    ("openlit", "1.45.0"),
    ("nicegui", "3.18.0"),
    ("reflex", "0.10.1"),
    ("pyatv", "0.18.0"),
    ("lancedb", "0.40.0"),
    # held out in round 23: chosen and read for faults by three readers while the rules
    # were changed for round 22, then read once with those rules frozen
    ("textual", "8.2.8"),
    ("runpod", "1.12.0"),
    ("grpclib", "0.4.9"),
    ("uvicorn", "0.54.0"),
    ("gcloud-aio-storage", "9.6.5"),
    ("gcloud-aio-pubsub", "8.0.0"),
    ("gcloud-aio-auth", "5.6.0"),
    ("assemblyai", "1.8.2"),
    ("langgraph-sdk", "0.4.14"),
    # held out in round 24: chosen and read for faults by three readers, then read once
    # with the rules frozen as they were at the end of round 23
    ("together", "3.1.1"),
    ("voyageai", "0.5.0"),
    ("replicate", "1.0.7"),
    ("firecrawl-py", "4.55.0"),
    ("langchain-openai", "1.7.4"),
    ("botbuilder-core", "4.17.1"),
    ("livekit-api", "1.2.2"),
    ("quart", "0.22.0"),
    ("aioesphomeapi", "46.23.0"),
    ("fastapi-users", "15.0.5"),
    ("supabase-auth", "2.34.1"),
    ("langchain-anthropic", "1.7.10"),
    # held out in round 25: chosen and read for faults by three readers while the rules
    # were changed for round 24, then read once with those rules frozen
    ("huggingface-hub", "2.4.0"),
    ("aioboto3", "15.5.0"),
    ("gidgethub", "6.0.0"),
    ("aiomqtt", "2.5.1"),
    ("flet", "1.0.5"),
    ("hypercorn", "0.18.0"),
    ("starlette", "1.10.0"),
    ("coredis", "6.9.0"),
    ("langgraph-checkpoint-postgres", "3.2.0"),
    ("langgraph-checkpoint-sqlite", "3.1.2"),
    ("aiocache", "0.12.3"),
    ("databases", "0.9.0"),
    ("aiosqlite", "0.22.1"),
    ("langchain-mcp-adapters", "0.3.2"),
    # held out in round 26: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 25
    ("pymongo", "4.20.1"),
    ("fal-client", "1.0.3"),
    ("psycopg", "3.3.9"),
    ("aiomysql", "0.3.2"),
    ("asyncmy", "0.2.18"),
    ("httpcore", "1.0.9"),
    ("opensearch-py", "3.2.0"),
    ("langchain-google-genai", "4.4.3"),
    ("llama-index-llms-openai", "0.8.3"),
    ("storage3", "2.34.1"),
    ("postgrest", "2.34.1"),
    ("realtime", "2.34.1"),
    # held out in round 27: chosen and read for faults by three readers, then read once
    # with the rules frozen at the previous session's release (5f15ad1)
    ("python-binance", "1.0.37"),
    ("langchain-aws", "1.9.1"),
    ("langchain-postgres", "0.0.19"),
    ("langchain-mongodb", "0.12.1"),
    ("langchain-redis", "0.2.6"),
    ("langchain-ollama", "1.1.0"),
    ("llama-index-vector-stores-postgres", "0.9.0"),
    ("zigpy", "2.4.0"),
    ("python-kasa", "0.12.0"),
    ("bleak", "3.1.0"),
    ("aiohue", "4.9.0"),
    ("aiohomekit", "4.0.1"),
    ("gel", "3.1.0"),
    ("ormar", "0.26.0"),
    ("aiodocker", "0.27.0"),
    ("pydantic-graph", "2.68.0"),
    ("atomic-agents", "1.1.11"),
    ("aiosmtplib", "5.1.3"),
    ("aioimaplib", "2.0.3"),
    ("aio-georss-client", "2026.6.0"),
    # held out in round 28: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 27
    ("txtai", "9.14.0"),
    ("aisuite", "0.2.0"),
    ("bellows", "1.2.1"),
    ("llama-index-llms-anthropic", "0.12.3"),
    ("langchain-groq", "1.1.3"),
    ("langchain-mistralai", "1.1.6"),
    ("langchain-fireworks", "1.7.1"),
    ("text-generation", "0.7.0"),
    ("tavily-python", "0.8.5"),
    ("asyncpraw", "8.0.3"),
    ("exa-py", "2.28.0"),
    ("lmstudio", "1.5.0"),
    ("twikit", "2.3.3"),
    ("asyncpg", "0.32.0"),
    ("aiopg", "1.4.0"),
    ("aiormq", "7.2.4"),
    ("aiojobs", "1.4.0"),
    ("aiohttp-session", "2.12.1"),
    ("fastapi-cache2", "0.2.2"),
    ("odmantic", "1.1.0"),
    ("aiogoogle", "5.19.0"),
    ("aioshelly", "13.35.0"),
    ("aiounifi", "74"),
    ("pyipp", "0.17.2"),
    ("aiogithubapi", "25.5.0"),
    # held out in round 29: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 28
    ("aiocoap", "0.4.17"),
    ("aioquic", "1.7.2"),
    ("zeroconf", "0.154.0"),
    ("gmqtt", "0.8.0"),
    ("amqtt", "0.12.1"),
    ("channels", "4.3.2"),
    ("channels-redis", "4.3.0"),
    ("aiomonitor", "0.7.1"),
    ("aioconsole", "0.8.2"),
    ("aiomultiprocess", "0.9.1"),
    ("aiomcache", "0.8.2"),
    ("aiocron", "2.1"),
    ("aiohttp-jinja2", "1.6"),
    ("langchain-google-vertexai", "3.2.5"),
    ("langchain-nvidia-ai-endpoints", "1.5.0"),
    ("langchain-cohere", "0.6.0"),
    ("qdrant-haystack", "13.1.0"),
    ("llama-index-vector-stores-qdrant", "0.10.4"),
    ("llama-index-embeddings-openai", "0.7.0"),
    # held out in round 30: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 29
    ("pysnmp", "7.1.30"),
    ("aiogram-dialog", "2.6.0"),
    ("aiosmtpd", "1.4.6"),
    ("aioftp", "0.28.3"),
    ("python-socks", "3.2.1"),
    ("aiohttp-socks", "0.12.0"),
    ("aiodns", "4.0.4"),
    ("aioapns", "4.0"),
    ("llama-cloud-services", "0.6.94"),
    ("controlflow", "0.12.1"),
    ("aiostream", "0.8.1"),
    ("aioprometheus", "23.12.0"),
    ("slowapi", "0.1.10"),
    ("fastapi-mail", "1.6.8"),
    ("aiohttp-cors", "0.8.1"),
    ("asgi-lifespan", "2.1.0"),
    # held out in round 31: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 30
    ("falcon", "4.4.0"),
    ("graphrag", "3.3.0"),
    ("mcpadapt", "0.1.19"),
    ("aiofiles", "25.1.0"),
    ("upstash-redis", "1.8.0"),
    ("xknx", "4.0.0"),
    ("llm", "0.36"),
    ("pymodbus", "3.16.1"),
    ("hap-python", "5.2.0"),
    ("scrapling", "0.5"),
    ("groq", "1.7.0"),
    ("ariadne", "1.1.1"),
    ("agency-swarm", "0.7.2"),
    ("nano-graphrag", "0.0.8.2"),
    # held out in round 32: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 31
    ("distributed", "2026.8.0"),
    ("pytelegrambotapi", "4.37.1"),
    ("jupyter-client", "8.10.0"),
    ("python-engineio", "4.15.1"),
    ("asyncer", "0.0.18"),
    ("httpx-oauth", "0.17.0"),
    ("redisvl", "0.28.0"),
    ("meilisearch-python-sdk", "8.0.1"),
    ("stagehand", "4.3.0"),
    ("langmem", "0.0.30"),
    ("asyncstdlib", "3.14.0"),
    ("aiohttp-client-cache", "0.15.0"),
    # held out in round 33: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 32
    ("weave", "0.54.0"),
    ("clickhouse-connect", "1.12.0"),
    ("fsspec", "2026.9.0"),
    ("s3fs", "2026.9.0"),
    ("gcsfs", "2026.10.1"),
    ("vocode", "0.1.113"),
    ("kr8s", "0.20.15"),
    ("pydantic-evals", "2.62.0"),
    ("hass-nabucasa", "0.82.0"),
    # held out in round 34: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 33
    ("braintrust", "0.48.1"),
    ("python-roborock", "7.13.0"),
    ("uiprotect", "25.0.0"),
    ("llama-index-workflows", "2.26.1"),
    ("nbclient", "0.11.0"),
    ("langchain-experimental", "0.4.2"),
    ("async-upnp-client", "0.49.0"),
    ("zwave-js-server-python", "0.56.0"),
    ("ipykernel", "7.4.0"),
    ("surrealdb", "2.0.0"),
    ("asynch", "0.4.0"),
    ("bleak-retry-connector", "4.7.1"),
    # held out in round 35: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 34
    ("langflow-base", "1.13.0"),
    ("deepagents", "0.7.32"),
    ("cerebras-cloud-sdk", "1.91.0"),
    ("fastapi-mcp", "0.4.0"),
    ("langgraph-swarm", "0.1.0"),
    ("aiodynamo", "26.4"),
    ("music-assistant-client", "1.3.4"),
    ("habluetooth", "7.2.0"),
    ("python-matter-server", "7.0.1"),
    ("pyoverkiz", "1.20.6"),
    ("pyheos", "1.0.6"),
    ("aioautomower", "3.1.0"),
    ("aiowebostv", "0.10.0"),
    ("pysmartthings", "1.2.0"),
    # held out in round 36: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 35
    ("langchain-community", "0.4.2"),
    ("fireworks-ai", "1.2.30"),
    ("tweepy", "4.17.0"),
    ("notion-client", "3.1.0"),
    ("aiolifx", "1.2.2"),
    ("aiortsp", "1.4.0"),
    ("psycopg-pool", "3.3.3"),
    ("pycrdt-websocket", "0.16.5"),
    ("pylitterbot", "2025.7.0"),
    # held out in round 37: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 36
    ("authlib", "1.9.10"),
    ("promptlayer", "1.5.16"),
    ("khl.py", "0.3.17"),
    ("qq-botpy", "1.2.1"),
    ("nonebot-adapter-onebot", "2.4.6"),
    ("mattermostdriver", "7.3.2"),
    ("e2b-code-interpreter", "2.11.5"),
    ("cashews", "7.6.0"),
    ("limits", "5.8.0"),
    ("sqladmin", "0.32.0"),
    # held out in round 38: chosen and read for faults by four readers, then read once
    # with the rules frozen after the changes for round 37
    ("parlant", "3.3.2"),
    ("dashscope", "2.0.2"),
    ("mcp-proxy", "0.13.0"),
    ("jupyterhub", "6.1.1"),
    ("maubot", "0.6.0"),
    ("hikari-lightbulb", "3.2.6"),
    ("dbos", "3.4.0"),
    ("inngest", "0.5.19"),
    ("prisma", "0.15.0"),
    ("blacksheep", "2.6.4"),
    # held out in round 39: chosen and read for faults by three readers, then read once
    # with the rules frozen after the changes for round 38
    ("daytona", "0.226.1"),
    ("lagent", "0.2.4"),
    ("langserve", "0.3.3"),
    ("redis-om", "1.2.0"),
    ("aioredis", "2.0.1"),
    ("gremlinpython", "3.8.2"),
    ("restate-sdk", "1.3.0"),
    ("aiosonic", "1.3.3"),
    ("hishel", "2.0.0"),
    ("rasa-sdk", "3.21.1"),
    ("scrapy-playwright", "0.0.48"),
)
# The rounds whose projects readers listed faults in before the audit ran (their lists are
# in ``audit_readers/``; `bench.audit_recall` scores them).
READ_ROUNDS: dict[int, tuple[str, ...]] = {
    11: ("camel-ai", "mirascope", "magentic", "telethon", "temporalio", "neo4j"),
    12: ("llama-stack", "metagpt", "e2b", "aiobotocore", "g4f", "pydoll-python"),
    13: ("openai", "anthropic", "asyncssh", "aiortc", "nodriver", "pymilvus"),
    14: ("google-genai", "slack-sdk", "ollama", "chromadb", "aiohttp", "websockets"),
    15: ("cohere", "mistralai", "langfuse", "redis", "elasticsearch", "semantic-router"),
    16: (
        "litestar",
        "agentops",
        "faust-streaming",
        "pinecone",
        "discord-py-interactions",
        "crewai-tools",
    ),
    17: ("deepeval", "openhands-ai", "langsmith", "gql", "composio", "jupyter-server"),
    18: (
        "opik",
        "agent-framework-core",
        "nemoguardrails",
        "r2r",
        "beeai-framework",
        "guardrails-ai",
    ),
    19: ("open-webui", "bentoml", "litserve", "gradio", "traceloop-sdk"),
    20: ("modal", "hatchet-sdk", "strawberry-graphql", "motor", "apscheduler"),
    21: ("arize-phoenix", "ag2", "lmnr", "khoj", "vanna"),
    22: ("openlit", "nicegui", "reflex", "pyatv", "lancedb"),
    23: (
        "textual",
        "runpod",
        "grpclib",
        "uvicorn",
        "gcloud-aio-storage",
        "gcloud-aio-pubsub",
        "gcloud-aio-auth",
        "assemblyai",
        "langgraph-sdk",
    ),
    24: (
        "together",
        "voyageai",
        "replicate",
        "firecrawl-py",
        "langchain-openai",
        "botbuilder-core",
        "livekit-api",
        "quart",
        "aioesphomeapi",
        "fastapi-users",
        "supabase-auth",
        "langchain-anthropic",
    ),
    25: (
        "huggingface-hub",
        "aioboto3",
        "gidgethub",
        "aiomqtt",
        "flet",
        "hypercorn",
        "starlette",
        "coredis",
        "langgraph-checkpoint-postgres",
        "langgraph-checkpoint-sqlite",
        "aiocache",
        "databases",
        "aiosqlite",
        "langchain-mcp-adapters",
    ),
    26: (
        "pymongo",
        "fal-client",
        "psycopg",
        "aiomysql",
        "asyncmy",
        "httpcore",
        "opensearch-py",
        "langchain-google-genai",
        "llama-index-llms-openai",
        "storage3",
        "postgrest",
        "realtime",
    ),
    27: (
        "python-binance",
        "langchain-aws",
        "langchain-postgres",
        "langchain-mongodb",
        "langchain-redis",
        "langchain-ollama",
        "llama-index-vector-stores-postgres",
        "zigpy",
        "python-kasa",
        "bleak",
        "aiohue",
        "aiohomekit",
        "gel",
        "ormar",
        "aiodocker",
        "pydantic-graph",
        "atomic-agents",
        "aiosmtplib",
        "aioimaplib",
        "aio-georss-client",
    ),
    28: (
        "txtai",
        "aisuite",
        "bellows",
        "llama-index-llms-anthropic",
        "langchain-groq",
        "langchain-mistralai",
        "langchain-fireworks",
        "text-generation",
        "tavily-python",
        "asyncpraw",
        "exa-py",
        "lmstudio",
        "twikit",
        "asyncpg",
        "aiopg",
        "aiormq",
        "aiojobs",
        "aiohttp-session",
        "fastapi-cache2",
        "odmantic",
        "aiogoogle",
        "aioshelly",
        "aiounifi",
        "pyipp",
        "aiogithubapi",
    ),
    29: (
        "aiocoap",
        "aioquic",
        "zeroconf",
        "gmqtt",
        "amqtt",
        "channels",
        "channels-redis",
        "aiomonitor",
        "aioconsole",
        "aiomultiprocess",
        "aiomcache",
        "aiocron",
        "aiohttp-jinja2",
        "langchain-google-vertexai",
        "langchain-nvidia-ai-endpoints",
        "langchain-cohere",
        "qdrant-haystack",
        "llama-index-vector-stores-qdrant",
        "llama-index-embeddings-openai",
    ),
    30: (
        "pysnmp",
        "aiogram-dialog",
        "aiosmtpd",
        "aioftp",
        "python-socks",
        "aiohttp-socks",
        "aiodns",
        "aioapns",
        "llama-cloud-services",
        "controlflow",
        "aiostream",
        "aioprometheus",
        "slowapi",
        "fastapi-mail",
        "aiohttp-cors",
        "asgi-lifespan",
    ),
    31: (
        "falcon",
        "graphrag",
        "mcpadapt",
        "aiofiles",
        "upstash-redis",
        "xknx",
        "llm",
        "pymodbus",
        "hap-python",
        "scrapling",
        "groq",
        "ariadne",
        "agency-swarm",
        "nano-graphrag",
    ),
    32: (
        "distributed",
        "pytelegrambotapi",
        "jupyter-client",
        "python-engineio",
        "asyncer",
        "httpx-oauth",
        "redisvl",
        "meilisearch-python-sdk",
        "stagehand",
        "langmem",
        "asyncstdlib",
        "aiohttp-client-cache",
    ),
    33: (
        "weave",
        "clickhouse-connect",
        "fsspec",
        "s3fs",
        "gcsfs",
        "vocode",
        "kr8s",
        "pydantic-evals",
        "hass-nabucasa",
    ),
    34: (
        "braintrust",
        "python-roborock",
        "uiprotect",
        "llama-index-workflows",
        "nbclient",
        "langchain-experimental",
        "async-upnp-client",
        "zwave-js-server-python",
        "ipykernel",
        "surrealdb",
        "asynch",
        "bleak-retry-connector",
    ),
    35: (
        "langflow-base",
        "deepagents",
        "cerebras-cloud-sdk",
        "fastapi-mcp",
        "langgraph-swarm",
        "aiodynamo",
        "music-assistant-client",
        "habluetooth",
        "python-matter-server",
        "pyoverkiz",
        "pyheos",
        "aioautomower",
        "aiowebostv",
        "pysmartthings",
    ),
    36: (
        "langchain-community",
        "fireworks-ai",
        "tweepy",
        "notion-client",
        "aiolifx",
        "aiortsp",
        "psycopg-pool",
        "pycrdt-websocket",
        "pylitterbot",
    ),
    37: (
        "authlib",
        "promptlayer",
        "khl.py",
        "qq-botpy",
        "nonebot-adapter-onebot",
        "mattermostdriver",
        "e2b-code-interpreter",
        "cashews",
        "limits",
        "sqladmin",
    ),
    38: (
        "parlant",
        "dashscope",
        "mcp-proxy",
        "jupyterhub",
        "maubot",
        "hikari-lightbulb",
        "dbos",
        "inngest",
        "prisma",
        "blacksheep",
    ),
    39: (
        "daytona",
        "lagent",
        "langserve",
        "redis-om",
        "aioredis",
        "gremlinpython",
        "restate-sdk",
        "aiosonic",
        "hishel",
        "rasa-sdk",
        "scrapy-playwright",
    ),
}
# The last round, read with the current rules frozen: scored apart (default and opt-in
# rules); it becomes development when a rule changes after reading it.
HELD_OUT: frozenset[str] = frozenset(READ_ROUNDS[max(READ_ROUNDS)])
OPT_IN = sorted(code for code, rule in RULES.items() if rule.parent)
LABELS = Path(__file__).with_name("audit_labels.json")
TARGET_OVERALL = 0.95
TARGET_PER_RULE = 0.90  # for every rule with at least 5 findings


def corpus_dir() -> Path:
    return Path(os.environ.get("BENCH_AUDIT_CORPUS", "/tmp/bounded-audit-corpus"))


def fetch(root: Path) -> dict[str, Path]:
    """Download and unpack each pinned wheel once; the unpacked folder per project."""
    wheels = root / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    unpacked: dict[str, Path] = {}
    for name, version in PROJECTS:
        dest = root / "src" / f"{name}-{version}"
        if not dest.is_dir():
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
            subprocess.run(
                [*pip, "--only-binary", ":all:", "-d", str(wheels), f"{name}=={version}"],
                check=True,
            )
            stem = name.replace("-", "_").lower()
            [wheel] = [
                w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{stem}-{version}-")
            ]
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(dest)
        unpacked[name] = dest
    return unpacked


def _lines(root: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in root.rglob("*.py"))


def label_of(labels: dict[str, dict[str, list[str]]], project: str, key: str) -> str | None:
    """'tp' or 'fp' for ``path:line:code`` (or a ``*:code`` group label), None if unlabelled."""
    table = labels.get(project, {})
    place, code = key.rsplit(":", 1)
    found = table.get(key) or table.get("*:" + code)
    parent = RULES[code].parent if code in RULES else None
    if found is None and parent is not None:
        found = table.get(f"{place}:{parent}")
    return found[0] if found else None


def run() -> list[Section]:
    """Audit every project and score the findings against the labels.

    Precision per rule is reported for the default rules on the development set (whose
    findings shaped the heuristics), on the held-out set when there is one (chosen before
    its findings were seen), and for the opt-in rules apart.
    """
    labels: dict[str, dict[str, list[str]]] = json.loads(LABELS.read_text())
    rows: list[Row] = []
    per_rule: dict[bool, Counter[tuple[str, str]]] = {False: Counter(), True: Counter()}
    opt_in: dict[bool, Counter[tuple[str, str]]] = {False: Counter(), True: Counter()}
    unlabelled: list[str] = []
    total_lines = 0
    for name, root in fetch(corpus_dir()).items():
        report = audit([root], use_config=False)
        for finding in audit([root], select=OPT_IN, use_config=False).findings:
            key = f"{Path(finding.path).relative_to(root).as_posix()}:{finding.line}:{finding.code}"
            label = label_of(labels, name, key)
            if label is None:
                unlabelled.append(f"{name} {key}")
            else:
                opt_in[name in HELD_OUT][(finding.code, label)] += 1
        lines = _lines(root)
        total_lines += lines
        counts: Counter[str] = Counter()
        for finding in report.findings:
            if finding.code == "BND000":
                continue  # a file the audit could not read: coverage, not a fault claim
            key = f"{Path(finding.path).relative_to(root).as_posix()}:{finding.line}:{finding.code}"
            label = label_of(labels, name, key)
            if label is None:
                unlabelled.append(f"{name} {key}")
                continue
            counts[label] += 1
            per_rule[name in HELD_OUT][(finding.code, label)] += 1
        found = counts["tp"] + counts["fp"]
        held_out = " (held out)" if name in HELD_OUT else ""
        rows.append(
            Row(
                f"{name} {dict(PROJECTS)[name]}{held_out}",
                counts["tp"] / found if found else None,
                extra={
                    "lines": f"{lines:,}",
                    "findings": str(found),
                    "true": str(counts["tp"]),
                    "false": str(counts["fp"]),
                },
            )
        )
    notes = [f"{len(PROJECTS)} projects, {total_lines:,} lines; labels: bench/audit_labels.json."]
    if unlabelled:
        notes.append(f"{len(unlabelled)} unlabelled findings: " + "; ".join(unlabelled[:20]))
    sections = [
        Section(
            title="bounded audit on real code: precision per project (hand-labelled)",
            unit="precision",
            reference=None,
            rows=rows,
            columns=["lines", "findings", "true", "false"],
            notes=notes,
            value_format="{:.1%}",
        ),
        _rule_section("default rules, development set", per_rule[False]),
    ]
    if HELD_OUT:
        sections.append(_rule_section("default rules, held-out set", per_rule[True]))
    sections.append(
        _rule_section(
            "opt-in rules (off by default), development set", opt_in[False], targets=False
        )
    )
    if HELD_OUT:
        sections.append(
            _rule_section(
                "opt-in rules (off by default), held-out set", opt_in[True], targets=False
            )
        )
    return sections


def _rule_section(
    which: str, per_rule: Counter[tuple[str, str]], *, targets: bool = True
) -> Section:
    """Precision per rule on one set of projects, with the issue's targets if `targets`
    (the opt-in tier holds weaker evidence on purpose: no precision target)."""
    tp = sum(v for (_, label), v in per_rule.items() if label == "tp")
    fp = sum(v for (_, label), v in per_rule.items() if label == "fp")
    overall = tp / (tp + fp) if tp + fp else 0.0
    rule_rows = []
    goals = [
        Target(
            f"precision >= {TARGET_OVERALL:.0%} overall",
            overall >= TARGET_OVERALL,
            f"{overall:.1%} ({tp} of {tp + fp})",
        )
    ]
    for code in sorted({code for code, _ in per_rule}):
        t, f = per_rule[(code, "tp")], per_rule[(code, "fp")]
        rule_rows.append(Row(code, t / (t + f), extra={"findings": str(t + f), "false": str(f)}))
        if t + f >= 5:
            goals.append(
                Target(
                    f"{code} precision >= {TARGET_PER_RULE:.0%}",
                    t / (t + f) >= TARGET_PER_RULE,
                    f"{t / (t + f):.1%} ({t} of {t + f})",
                )
            )
    return Section(
        title=f"bounded audit on real code: precision per rule, {which}",
        unit="precision",
        reference=None,
        rows=rule_rows,
        columns=["findings", "false"],
        targets=goals if targets else [],
        value_format="{:.1%}",
    )


if __name__ == "__main__":
    from rich.console import Console

    from bench._harness import print_section

    console = Console()
    for section in run():
        print_section(console, section)
