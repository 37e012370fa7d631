"""Gemini replies: a ``GenerateContentResponse`` as an OpenAI ``chat.completion``.

Owns the mapping of candidates, parts, function calls (with their thought signatures),
finish reasons and usage metadata, and the refusal of a prompt Gemini blocked.
Pure functions: no HTTP, no keys, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.errors import ProviderError
from chalicelib.providers import shapes
from chalicelib.providers.gemini_chat import FINISH_REASONS, invalid


def chat_from_reply(
    reply: Mapping[str, Any], *, model: str, created: int, fallback_id: str, prompt_param: str = "messages"
) -> dict[str, Any]:
    """The ``chat.completion`` for a ``GenerateContentResponse`` (one choice per candidate).

    A prompt Gemini refused (``promptFeedback.blockReason``, no candidates) is a 400
    ``content_filter`` error naming ``prompt_param``, as OpenAI-style APIs answer a
    filtered prompt; a reply with neither candidates nor a block reason is a 502.
    """
    candidates = reply.get("candidates")
    if not isinstance(candidates, list) or not candidates:
        raise _refusal(reply.get("promptFeedback"), prompt_param)
    response_id = reply.get("responseId")
    call_prefix = f"call_{response_id}_" if isinstance(response_id, str) and response_id else "call_"
    counts = _usage_counts(reply.get("usageMetadata"))
    choices: list[dict[str, Any]] = []
    numbered = 0
    for index, candidate in enumerate(candidates):
        content, finish, calls = _candidate(candidate, call_prefix, numbered)
        numbered += len(calls)
        choices.append(_choice(index, content, finish, calls))
    version = reply.get("modelVersion")
    result = shapes.chat_completion(
        id=response_id if isinstance(response_id, str) and response_id else fallback_id,
        model=version if isinstance(version, str) and version else model,
        created=created,
        content=None,
        finish_reason="stop",
        prompt_tokens=counts["prompt"],
        completion_tokens=counts["completion"],
    )
    result["choices"] = choices
    result["usage"]["prompt_tokens_details"] = {"cached_tokens": counts["cached"]}
    result["usage"]["completion_tokens_details"] = {"reasoning_tokens": counts["thoughts"]}
    return result


def _refusal(feedback: Any, prompt_param: str) -> ProviderError:
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if not isinstance(feedback, dict) or not isinstance(reason, str) or not reason:
        return _unusable("a reply without candidates")
    detail = feedback.get("blockReasonMessage")
    message = f"Gemini blocked the prompt (blockReason {reason})"
    message += f": {detail}" if isinstance(detail, str) and detail else ""
    return invalid(message, prompt_param, "content_filter")


def _choice(index: int, content: str | None, finish: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """One choice, in the shape ``shapes.chat_completion`` gives its first."""
    single = shapes.chat_completion(
        id="",
        model="",
        created=0,
        content=content,
        finish_reason=finish,
        prompt_tokens=0,
        completion_tokens=0,
        tool_calls=calls,
    )
    return {**single["choices"][0], "index": index}


def _candidate(candidate: Any, call_prefix: str, first_call: int) -> tuple[str | None, str, list[dict[str, Any]]]:
    if not isinstance(candidate, dict):
        raise _unusable("a candidate that is not an object")
    content = candidate.get("content")
    parts = content.get("parts", []) if isinstance(content, dict) else []
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise _unusable("candidate parts that are not objects")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            calls.append(_tool_call(part, f"{call_prefix}{first_call + len(calls)}"))
    finish = FINISH_REASONS.get(str(candidate.get("finishReason")), "stop")
    if calls and finish == "stop":
        finish = "tool_calls"
    text = "".join(texts)
    return (None if calls and not text else text), finish, calls


def _tool_call(part: Mapping[str, Any], generated_id: str) -> dict[str, Any]:
    call = part["functionCall"]
    if not isinstance(call.get("name"), str):
        raise _unusable("a function call without a name")
    own_id = call.get("id")
    args = call.get("args") if isinstance(call.get("args"), dict) else {}
    entry = shapes.tool_call(own_id if isinstance(own_id, str) and own_id else generated_id, call["name"], args)
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        entry["extra_content"] = {"google": {"thought_signature": signature}}
    return entry


def _usage_counts(metadata: Any) -> dict[str, int]:
    """OpenAI's counts: tool-use prompts count as prompt, thoughts as completion tokens."""
    found = metadata if isinstance(metadata, dict) else {}

    def count(name: str) -> int:
        value = found.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return {
        "prompt": count("promptTokenCount") + count("toolUsePromptTokenCount"),
        "completion": count("candidatesTokenCount") + count("thoughtsTokenCount"),
        "cached": count("cachedContentTokenCount"),
        "thoughts": count("thoughtsTokenCount"),
    }


def _unusable(what: str) -> ProviderError:
    return ProviderError(f"Gemini returned {what}", status=502, code="invalid_response")
