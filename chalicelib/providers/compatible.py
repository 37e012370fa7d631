"""The OpenAI-compatible family: providers served by the ``openai`` adapter at their own roots.

One row per provider: its default base URL (overridable with ``<NAME>_BASE_URL``), the
request types its OpenAI-compatible API offers, and whether it needs a key
(``<NAME>_API_KEY``). Self-hosted servers (ollama, vllm) need none, and their base URL
gets ``/v1`` added when a user gives the bare server address.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.contract import RequestType
from chalicelib.providers.base import ProviderSpec, key_needed, no_key_needed
from chalicelib.providers.openai import compatible_spec

CHAT = RequestType.CHAT_COMPLETION
TEXT = RequestType.TEXT_COMPLETION
RESPONSES = RequestType.RESPONSES
EMBEDDING = RequestType.EMBEDDING
IMAGES = RequestType.IMAGE_GENERATION
SPEECH = RequestType.SPEECH
TRANSCRIPTION = RequestType.TRANSCRIPTION


@dataclass(frozen=True)
class Member:
    name: str
    base_url: str
    request_types: frozenset[RequestType]
    needs_key: bool = True
    ensure_suffix: str = ""


FAMILY: tuple[Member, ...] = (
    Member("groq", "https://api.groq.com/openai/v1", frozenset({CHAT, RESPONSES, SPEECH, TRANSCRIPTION})),
    Member("together", "https://api.together.xyz/v1", frozenset({CHAT, TEXT, EMBEDDING, IMAGES})),
    Member("fireworks", "https://api.fireworks.ai/inference/v1", frozenset({CHAT, TEXT, EMBEDDING})),
    Member("deepseek", "https://api.deepseek.com/v1", frozenset({CHAT, TEXT})),
    Member("xai", "https://api.x.ai/v1", frozenset({CHAT, RESPONSES, IMAGES})),
    Member("openrouter", "https://openrouter.ai/api/v1", frozenset({CHAT, TEXT, RESPONSES, EMBEDDING})),
    Member("perplexity", "https://api.perplexity.ai", frozenset({CHAT})),
    Member("cerebras", "https://api.cerebras.ai/v1", frozenset({CHAT, TEXT})),
    Member("ollama", "http://localhost:11434/v1", frozenset({CHAT, TEXT, EMBEDDING}), False, "/v1"),
    Member("vllm", "http://localhost:8000/v1", frozenset({CHAT, TEXT, RESPONSES, EMBEDDING}), False, "/v1"),
)

SPECS: tuple[ProviderSpec, ...] = tuple(
    compatible_spec(
        member.name,
        member.base_url,
        member.request_types,
        key_required=key_needed if member.needs_key else no_key_needed,
        ensure_suffix=member.ensure_suffix,
    )
    for member in FAMILY
)
