"""Chat over Amazon Bedrock's Converse API: the request translation and the reply translation.

Owns how an OpenAI-style chat request becomes the keyword arguments of Bedrock Runtime's
``Converse`` operation (system prompts, user/assistant turns, images, tool calls and tool
results, tool definitions and choice, inference settings) and how a Converse reply becomes
a ``chat.completion``. Pure functions: no client, no environment, no I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from chalicelib.errors import ProviderError
from chalicelib.providers import shapes

IMAGE_FORMATS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}

Block = dict[str, Any]
Turn = dict[str, Any]


def converse_request(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Converse`` keyword arguments for an OpenAI-style chat ``body``."""
    system, turns = _conversation(body.get("messages"))
    request: dict[str, Any] = {"modelId": model, "messages": turns}
    if system:
        request["system"] = system
    inference = inference_config(body)
    if inference:
        request["inferenceConfig"] = inference
    tools = tool_config(body, turns)
    if tools:
        request["toolConfig"] = tools
    return request


def inference_config(body: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = shapes.max_tokens(body)
    if limit is not None:
        config["maxTokens"] = limit
    for source, target in (("temperature", "temperature"), ("top_p", "topP")):
        if isinstance(body.get(source), int | float) and not isinstance(body.get(source), bool):
            config[target] = body[source]
    stops = shapes.stop_sequences(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    return config


def tool_config(body: Mapping[str, Any], turns: list[Turn]) -> dict[str, Any] | None:
    """``toolConfig``: the request's tools, or (Bedrock insists) stand-ins for tools the history used.

    Converse has no ``tool_choice: "none"``: such a request sends no tools unless the history holds
    tool blocks, which Bedrock accepts only with a ``toolConfig``.
    """
    choice = body.get("tool_choice")
    declared = shapes.function_tools(body.get("tools"))
    used = _tool_names_used(turns)
    if choice == "none" or not declared:
        if not used:
            return None
        declared = declared or [{"name": name, "description": "", "parameters": _EMPTY_SCHEMA} for name in used]
        choice = None
    specs = [{"toolSpec": _tool_spec(tool)} for tool in declared]
    config: dict[str, Any] = {"tools": specs}
    bedrock_choice = _tool_choice(choice)
    if bedrock_choice is not None:
        config["toolChoice"] = bedrock_choice
    return config


def _tool_spec(tool: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool["name"], "inputSchema": {"json": tool["parameters"]}}
    if tool["description"]:
        spec["description"] = tool["description"]
    return spec


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        if isinstance(name, str):
            return {"tool": {"name": name}}
    return None


def _tool_names_used(turns: list[Turn]) -> list[str]:
    names: list[str] = []
    for turn in turns:
        for block in turn["content"]:
            name = block.get("toolUse", {}).get("name")
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


# messages -----------------------------------------------------------------------------


def _conversation(messages: Any) -> tuple[list[Block], list[Turn]]:
    """``(system blocks, turns)``: system messages lifted out, same-role neighbours merged."""
    system: list[Block] = []
    turns: list[Turn] = []
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message.get("content")))
            continue
        if role == "user":
            turn_role, blocks = "user", _user_blocks(message.get("content"), index)
        elif role == "assistant":
            turn_role, blocks = "assistant", _assistant_blocks(message)
        elif role == "tool":
            turn_role, blocks = "user", [_tool_result(message)]
        else:
            raise ProviderError(
                f"messages[{index}] has a role Bedrock cannot take: {role!r}",
                status=400,
                code="unsupported_input",
                param="messages",
            )
        if not blocks:
            continue
        if turns and turns[-1]["role"] == turn_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": turn_role, "content": blocks})
    return system, turns


def _texts(content: Any) -> list[str]:
    text = shapes.message_text(content)
    return [text] if text else []


def _user_blocks(content: Any, index: int) -> list[Block]:
    blocks: list[Block] = []
    for part in shapes.content_parts(content):
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if part.get("text"):
                blocks.append({"text": part["text"]})
        elif kind in ("image_url", "input_image"):
            blocks.append(image_block(shapes.image_url_of(part), index))
        else:
            raise ProviderError(
                f"messages[{index}] has a content part Bedrock chat does not take here: {kind!r}",
                status=400,
                code="unsupported_input",
                param="messages",
            )
    return blocks


def image_block(url: str | None, index: int) -> Block:
    """An image content block from a data URL; Converse takes image bytes, never a link."""
    parsed = shapes.parse_data_url(url) if url else None
    if parsed is None:
        raise ProviderError(
            f"messages[{index}]: Bedrock takes images as base64 data URLs only, not links",
            status=400,
            code="unsupported_input",
            param="messages",
        )
    media_type, data = parsed
    image_format = IMAGE_FORMATS.get(media_type.lower())
    if image_format is None:
        raise ProviderError(
            f"messages[{index}]: Bedrock takes png, jpeg, gif or webp images, not {media_type}",
            status=400,
            code="unsupported_input",
            param="messages",
        )
    return {"image": {"format": image_format, "source": {"bytes": base64.b64decode(data)}}}


def _assistant_blocks(message: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = [{"text": text} for text in _texts(message.get("content"))]
    for call in message.get("tool_calls") or []:
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            continue
        function = call["function"]
        tool_use = {
            "toolUseId": str(call.get("id")),
            "name": str(function.get("name")),
            "input": shapes.parse_arguments(function.get("arguments")),
        }
        blocks.append({"toolUse": tool_use})
    return blocks


def _tool_result(message: Mapping[str, Any]) -> Block:
    text = shapes.message_text(message.get("content"))
    return {"toolResult": {"toolUseId": str(message.get("tool_call_id")), "content": [{"text": text}]}}


# the reply ---------------------------------------------------------------------------


def chat_from_converse(reply: Mapping[str, Any], model: str, created: int) -> dict[str, Any]:
    """The ``chat.completion`` for a Converse reply (as boto3 returns it)."""
    output = reply.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise ProviderError("Bedrock returned a reply without an output message", status=502, code="invalid_response")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append(shapes.tool_call(str(use.get("toolUseId")), str(use.get("name")), use.get("input") or {}))
    counts = _mapping(reply.get("usage"))
    metadata = _mapping(reply.get("ResponseMetadata"))
    text = "".join(texts)
    return shapes.chat_completion(
        id=str(metadata.get("RequestId") or ""),
        model=model,
        created=created,
        content=text if text or not calls else None,
        finish_reason=FINISH_REASONS.get(str(reply.get("stopReason")), "stop"),
        prompt_tokens=_count(counts.get("inputTokens")),
        completion_tokens=_count(counts.get("outputTokens")),
        tool_calls=calls,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
