"""OpenAI-style shapes shared by the native adapters: results to build, requests to read.

Native adapters (Anthropic, Gemini, Cohere, Mistral, Bedrock) translate their provider's
reply into these exact shapes, and read the client's OpenAI-style request through these
helpers. A Responses request is served by translating it to a chat request and the chat
result back (``chat_request_from_responses`` / ``responses_from_chat``). Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib.errors import ProviderError

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})
_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[\w.-]+)*;base64,(?P<data>.*)$", re.DOTALL)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def tool_call(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    """A chat ``tool_calls`` entry; ``arguments`` is JSON text (objects are encoded)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, separators=(",", ":"))
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def chat_completion(
    *,
    id: str,
    model: str,
    created: int,
    content: str | None,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    tool_calls: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """OpenAI's ``chat.completion`` object with one choice."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def embedding_list(vectors: Sequence[Sequence[float]], model: str, prompt_tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings ``list`` object."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": list(v)} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def embedding_inputs(value: Any) -> list[str]:
    """The texts of an embeddings ``input`` (a string or a list of strings)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ProviderError("this provider embeds text input only", status=400, code="unsupported_input", param="input")


def message_text(content: Any) -> str:
    """The text of a chat message ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text")
        )
    return ""


def content_parts(content: Any) -> list[dict[str, Any]]:
    """A message ``content`` as a list of typed parts (a string becomes one text part)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [part for part in content if isinstance(part, dict)]
    return []


def image_url_of(part: Mapping[str, Any]) -> str | None:
    """The URL of an ``image_url`` (chat) or ``input_image`` (responses) part."""
    value = part.get("image_url")
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) else None


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:…;base64,…`` URL, else ``None``."""
    match = _DATA_URL.match(url)
    if not match:
        return None
    data = match.group("data")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return match.group("media") or "application/octet-stream", data


def function_tools(tools: Any) -> list[dict[str, Any]]:
    """``[{"name", "description", "parameters"}]`` from chat or Responses ``tools``."""
    found = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue
        nested = tool.get("function")
        spec: dict[str, Any] = nested if isinstance(nested, dict) else tool
        if isinstance(spec.get("name"), str):
            found.append(
                {
                    "name": spec["name"],
                    "description": spec.get("description") or "",
                    "parameters": spec.get("parameters") or {"type": "object", "properties": {}},
                }
            )
    return found


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's ``arguments`` (JSON text or an object) as an object; bad JSON → empty."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def stop_sequences(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def max_tokens(body: Mapping[str, Any]) -> int | None:
    """The output token limit under any of its OpenAI names."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# Responses API over chat ---------------------------------------------------------------


def chat_request_from_responses(body: Mapping[str, Any]) -> dict[str, Any]:
    """A chat request equivalent to a Responses request (instructions, items, tools, limits, format).

    A stored conversation (``previous_response_id``) cannot be replayed to another provider: 400.
    """
    if body.get("previous_response_id"):
        raise ProviderError(
            "previous_response_id is not supported for this provider: send the conversation in input",
            status=400,
            error_type="invalid_request_error",
            code="unsupported_parameter",
            param="previous_response_id",
        )
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    for item in items:
        if isinstance(item, dict):
            _append_item(messages, item)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools = function_tools(body.get("tools"))
    if tools:
        chat["tools"] = [{"type": "function", "function": tool} for tool in tools]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    limit = max_tokens(body)
    if limit is not None:
        chat["max_tokens"] = limit
    for name in ("temperature", "top_p", "stop", "user", "metadata"):
        if body.get(name) is not None:
            chat[name] = body[name]
    text = body.get("text")
    response_format = _response_format(text.get("format") if isinstance(text, dict) else None)
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def _response_format(given: Any) -> dict[str, Any] | None:
    """A Responses ``text.format`` as a chat ``response_format``."""
    if not isinstance(given, dict) or given.get("type") not in ("json_object", "json_schema"):
        return None
    if given["type"] == "json_object":
        return {"type": "json_object"}
    spec = {name: given[name] for name in ("name", "schema", "strict", "description") if name in given}
    return {"type": "json_schema", "json_schema": spec}


def _append_item(messages: list[dict[str, Any]], item: Mapping[str, Any]) -> None:
    kind = item.get("type", "message")
    if kind == "function_call":
        call = tool_call(str(item.get("call_id") or item.get("id")), str(item.get("name")), item.get("arguments", ""))
        if messages and messages[-1]["role"] == "assistant" and "tool_calls" in messages[-1]:
            messages[-1]["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output)
        messages.append({"role": "tool", "tool_call_id": str(item.get("call_id")), "content": text})
    elif kind == "message" and isinstance(item.get("role"), str):
        role = "system" if item["role"] == "developer" else item["role"]
        messages.append({"role": role, "content": _chat_content(item.get("content"))})


def _chat_content(content: Any) -> Any:
    """Responses content parts (input_text, input_image, output_text) as chat parts."""
    if not isinstance(content, list):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") in ("input_image", "image_url") and image_url_of(part):
            parts.append({"type": "image_url", "image_url": {"url": image_url_of(part)}})
    return parts


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def responses_from_chat(chat: Mapping[str, Any]) -> dict[str, Any]:
    """The Responses API object for a ``chat.completion`` result."""
    choice = chat["choices"][0]
    message = choice.get("message") or {}
    suffix = str(chat.get("id", "")).removeprefix("chatcmpl-")
    output: list[dict[str, Any]] = []
    if message.get("content"):
        output.append(
            {
                "type": "message",
                "id": f"msg_{suffix}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": message["content"], "annotations": []}],
            }
        )
    for call in message.get("tool_calls") or []:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{call['id']}",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
                "status": "completed",
            }
        )
    counts = chat.get("usage") or {}
    truncated = choice.get("finish_reason") == "length"
    return {
        "id": f"resp_{suffix}",
        "object": "response",
        "created_at": chat.get("created"),
        "status": "incomplete" if truncated else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
        "error": None,
        "model": chat.get("model"),
        "output": output,
        "usage": {
            "input_tokens": counts.get("prompt_tokens", 0),
            "output_tokens": counts.get("completion_tokens", 0),
            "total_tokens": counts.get("total_tokens", 0),
        },
    }
