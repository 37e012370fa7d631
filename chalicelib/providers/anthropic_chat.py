"""OpenAI chat ↔ Anthropic Messages API translation. Pure functions, no HTTP.

Owns how an OpenAI-style chat request becomes a Messages API request body (system
prompt, alternating user/assistant turns of content blocks, tools, limits) and how a
Messages API reply becomes a ``chat.completion``. It does not know URLs, headers or
keys, and never decides retries.

Rules worth knowing:

- ``system`` and ``developer`` messages, wherever they appear, become the top-level
  ``system`` (a string for one, text blocks for several); empty ones are dropped.
- Turns are always lists of content blocks. Consecutive turns of the same Anthropic role
  (``tool`` messages count as ``user``) are merged, as the API requires alternation.
  Empty text parts are dropped (the API rejects empty text blocks), and a message
  left without any block adds no turn.
- Chat parameters without a Messages API equivalent (``response_format``, penalties,
  ``seed``, ``logprobs``, ``metadata``, …) are not sent; ``n`` > 1 is refused.
- Content the Messages API cannot take (audio, unknown part types, image URLs that are
  neither ``data:`` nor http(s)) is refused with a 400 before any HTTP call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.errors import ProviderError
from chalicelib.providers import shapes

DEFAULT_MAX_TOKENS = 4096

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

TOOL_CHOICES: dict[str, str] = {"auto": "auto", "required": "any", "none": "none"}
SYSTEM_ROLES = frozenset({"system", "developer"})
USAGE_PROMPT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def invalid(message: str, param: str, code: str = "invalid_request") -> ProviderError:
    """A request the Messages API cannot represent: 400, raised before any HTTP call."""
    return ProviderError(message, status=400, error_type="invalid_request_error", code=code, param=param)


# request: chat → Messages -----------------------------------------------------------------


def messages_request(model: str, chat: Mapping[str, Any]) -> dict[str, Any]:
    """The Messages API request body for an OpenAI-style chat request."""
    messages = chat.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty array", "messages")
    n = chat.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise invalid("this provider returns one choice per request; n must be 1", "n", "unsupported_parameter")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid("each message must be an object", f"messages[{index}]")
        if message.get("role") in SYSTEM_ROLES:
            text = shapes.message_text(message.get("content"))
            if text:
                system.append(text)
            continue
        role, blocks = _turn(message, index)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    payload: dict[str, Any] = {"model": model, "max_tokens": shapes.max_tokens(chat) or DEFAULT_MAX_TOKENS}
    if system:
        payload["system"] = system[0] if len(system) == 1 else [{"type": "text", "text": text} for text in system]
    payload["messages"] = turns
    payload.update(_sampling(chat))
    payload.update(_tools(chat))
    return payload


def _turn(message: Mapping[str, Any], index: int) -> tuple[str, list[dict[str, Any]]]:
    """The Anthropic role and the content blocks of one non-system chat message."""
    role = message.get("role")
    where = f"messages[{index}]"
    if role == "user":
        return "user", _content_blocks(message.get("content"), f"{where}.content", images=True)
    if role == "assistant":
        blocks = _content_blocks(message.get("content"), f"{where}.content", images=False)
        return "assistant", blocks + _tool_uses(message.get("tool_calls"), f"{where}.tool_calls")
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid("a tool message needs its tool_call_id", f"{where}.tool_call_id")
        result = {"type": "tool_result", "tool_use_id": call_id, "content": shapes.message_text(message.get("content"))}
        return "user", [result]
    raise invalid(f"role {role!r} is not supported by this provider", f"{where}.role", "unsupported_role")


def _content_blocks(content: Any, where: str, *, images: bool) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for number, part in enumerate(shapes.content_parts(content)):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid(f"a {kind} part needs a string {kind}", f"{where}[{number}].{kind}")
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url" and images:
            blocks.append(_image_block(part, f"{where}[{number}].image_url"))
        else:
            raise invalid(f"content part {kind!r} is not supported here", f"{where}[{number}]", "unsupported_content")
    return blocks


def _image_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``data:`` URLs become base64 sources, http(s) URLs become URL sources."""
    url = shapes.image_url_of(part)
    if url is None:
        raise invalid("an image_url part needs a url", where)
    inline = shapes.parse_data_url(url)
    if inline is not None:
        media_type, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid("image URLs must be base64 data: URLs or http(s) URLs", where, "invalid_image_url")


def _tool_uses(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list):
        raise invalid("tool_calls must be an array", where)
    blocks = []
    for number, call in enumerate(tool_calls):
        function = call.get("function") if isinstance(call, dict) else None
        call_id = call.get("id") if isinstance(call, dict) else None
        if not isinstance(call_id, str) or not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid("each tool call needs an id and a function name", f"{where}[{number}]")
        arguments = shapes.parse_arguments(function.get("arguments"))
        blocks.append({"type": "tool_use", "id": call_id, "name": function["name"], "input": arguments})
    return blocks


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sampling(chat: Mapping[str, Any]) -> dict[str, Any]:
    """temperature, top_p, top_k, stop → stop_sequences, user → metadata.user_id."""
    found: dict[str, Any] = {}
    for name in ("temperature", "top_p"):
        if _number(chat.get(name)):
            found[name] = chat[name]
    if isinstance(chat.get("top_k"), int) and not isinstance(chat.get("top_k"), bool):
        found["top_k"] = chat["top_k"]
    stops = shapes.stop_sequences(chat.get("stop"))
    if stops:
        found["stop_sequences"] = stops
    if isinstance(chat.get("user"), str) and chat["user"]:
        found["metadata"] = {"user_id": chat["user"]}
    return found


def _tools(chat: Mapping[str, Any]) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` (``parallel_tool_calls: false`` → ``disable_parallel_tool_use``)."""
    found: dict[str, Any] = {}
    tools = []
    for tool in shapes.function_tools(chat.get("tools")):
        entry = {"name": tool["name"]}
        if tool["description"]:
            entry["description"] = tool["description"]
        tools.append({**entry, "input_schema": tool["parameters"]})
    if tools:
        found["tools"] = tools
    choice = _tool_choice(chat.get("tool_choice"))
    if chat.get("parallel_tool_calls") is False and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice:
        found["tool_choice"] = choice
    return found


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        return {"type": TOOL_CHOICES[choice]}
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "tool", "name": function["name"]}
    raise invalid("tool_choice must be auto, required, none or a named function", "tool_choice")


# reply: Messages → chat.completion ------------------------------------------------------


def chat_from_message(reply: Any, model: str, created: int) -> dict[str, Any]:
    """The ``chat.completion`` for a Messages API ``message``; anything else is a 502."""
    content = reply.get("content") if isinstance(reply, dict) else None
    if not isinstance(reply, dict) or reply.get("type") != "message" or not isinstance(content, list):
        raise ProviderError("provider returned an unexpected body", status=502, code="invalid_response")
    if not isinstance(reply.get("id"), str):
        raise ProviderError("provider returned a message without an id", status=502, code="invalid_response")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append(shapes.tool_call(str(block.get("id")), str(block.get("name")), block.get("input") or {}))
    given = reply.get("usage")
    counts: Mapping[str, Any] = given if isinstance(given, dict) else {}
    stop_reason = reply.get("stop_reason")
    return shapes.chat_completion(
        id=reply["id"],
        model=reply["model"] if isinstance(reply.get("model"), str) else model,
        created=created,
        content="".join(texts) if texts else None,
        finish_reason=FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop",
        prompt_tokens=sum(_count(counts, name) for name in USAGE_PROMPT_FIELDS),
        completion_tokens=_count(counts, "output_tokens"),
        tool_calls=calls,
    )


def _count(counts: Mapping[str, Any], name: str) -> int:
    value = counts.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
