"""Gemini chat translation: an OpenAI chat request to a ``generateContent`` body, and back.

Owns the mapping of messages, content parts, tools, tool choice and sampling settings onto
Gemini's ``contents`` / ``systemInstruction`` / ``tools`` / ``toolConfig`` /
``generationConfig``. The reply side lives in ``gemini_reply``.
Pure functions: no HTTP, no keys, no clock. A request that cannot be expressed in
Gemini's terms is a 400 ``ProviderError`` raised before anything is sent.

Choices that are not a one-to-one rename:
- system/developer messages, wherever they stand, become ``systemInstruction`` parts;
- consecutive contents of the same Gemini role are merged (parallel tool results must
  share one content, as many responses as there were calls);
- tool schemas go out as ``parametersJsonSchema`` and ``json_schema`` response formats as
  ``responseJsonSchema``: both take full JSON Schema, so OpenAI strict-mode schemas
  (``additionalProperties``, ``$defs``) are not refused as they are by ``parameters``;
- Gemini's thought signatures ride on tool calls as
  ``extra_content.google.thought_signature`` (Google's OpenAI-compatibility convention) and
  are sent back on the matching ``functionCall`` part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from chalicelib.errors import ProviderError
from chalicelib.providers import shapes

GEMINI_ROLES = {"user": "user", "assistant": "model", "tool": "user", "function": "user"}
SYSTEM_ROLES = frozenset({"system", "developer"})
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
FILE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".bmp": "image/bmp",
    ".pdf": "application/pdf",
}
DEFAULT_IMAGE_TYPE = "image/jpeg"
AUDIO_TYPES = {"mp3": "audio/mp3", "wav": "audio/wav", "aac": "audio/aac", "flac": "audio/flac", "ogg": "audio/ogg"}
SAMPLING = {
    "temperature": "temperature",
    "top_p": "topP",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


def invalid(message: str, param: str, code: str = "invalid_request") -> ProviderError:
    return ProviderError(message, status=400, error_type="invalid_request_error", code=code, param=param)


# request ---------------------------------------------------------------------------------------


def build_generate_content(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI chat request body."""
    system, contents = translate_messages(body.get("messages"))
    payload: dict[str, Any] = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    declarations = [_declaration(tool) for tool in shapes.function_tools(body.get("tools"))]
    if declarations:
        payload["tools"] = [{"functionDeclarations": declarations}]
        if body.get("tool_choice") is not None:
            payload["toolConfig"] = {"functionCallingConfig": _calling_config(body["tool_choice"])}
    config = generation_config(body)
    if config:
        payload["generationConfig"] = config
    return payload


def translate_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(systemInstruction parts, contents)`` for a chat ``messages`` array."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name, the latest call with that id wins
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        where = f"messages[{index}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if not isinstance(message, Mapping) or not isinstance(role, str):
            raise invalid("each message must be an object with a role", where)
        if role in SYSTEM_ROLES:
            text = shapes.message_text(message.get("content"))
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            parts = _user_parts(message.get("content"), where)
        elif role == "assistant":
            parts = _assistant_parts(message, names, where)
        elif role in ("tool", "function"):
            parts = [_function_response(message, names, where)]
        else:
            raise invalid(f"Gemini has no equivalent for message role {role!r}", f"{where}.role")
        _append(contents, GEMINI_ROLES[role], parts)
    return system, contents


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(shapes.content_parts(content)):
        param = f"{where}.content[{index}]"
        kind = part.get("type")
        if kind in ("text", "input_text"):
            if isinstance(part.get("text"), str) and part["text"]:
                parts.append({"text": part["text"]})
        elif kind in ("image_url", "input_image"):
            parts.append(media_part(shapes.image_url_of(part), f"{param}.image_url"))
        elif kind == "input_audio":
            parts.append(_audio_part(part.get("input_audio"), f"{param}.input_audio"))
        elif kind == "file":
            parts.append(_file_part(part.get("file"), f"{param}.file"))
        else:
            raise invalid(f"content part type {kind!r} is not supported by Gemini", param, "unsupported_content")
    return parts


def media_part(url: Any, param: str) -> dict[str, Any]:
    """``inlineData`` for a base64 data URL, ``fileData`` for an http(s) URL."""
    if not isinstance(url, str) or not url:
        raise invalid("a URL is required", param, "unsupported_content")
    inline = shapes.parse_data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    if urlsplit(url).scheme.lower() in ("http", "https"):
        return {"fileData": {"mimeType": guess_media_type(url), "fileUri": url}}
    raise invalid("expected a base64 data: URL or an http(s) URL", param, "unsupported_content")


def guess_media_type(url: str, default: str = DEFAULT_IMAGE_TYPE) -> str:
    suffix = PurePosixPath(urlsplit(url).path).suffix.lower()
    return FILE_TYPES.get(suffix, default)


def _file_part(file: Any, param: str) -> dict[str, Any]:
    """A ``file`` part's ``file_data``: a data URL, or bare base64 typed by its filename (PDF if none)."""
    given = file if isinstance(file, dict) else {}
    data = given.get("file_data")
    if not isinstance(data, str) or not data:
        raise invalid("Gemini needs file parts as file_data", f"{param}.file_data", "unsupported_content")
    inline = shapes.parse_data_url(data)
    if inline is None and shapes.parse_data_url(f"data:;base64,{data}") is not None:
        inline = (guess_media_type(str(given.get("filename") or ""), "application/pdf"), data)
    if inline is None:
        raise invalid("file_data must be base64 or a base64 data: URL", f"{param}.file_data", "unsupported_content")
    return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}


def _audio_part(audio: Any, param: str) -> dict[str, Any]:
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str) or not audio["data"]:
        raise invalid("input_audio needs base64 data", param, "unsupported_content")
    media_type = AUDIO_TYPES.get(str(audio.get("format", "wav")).lower())
    if media_type is None:
        raise invalid(
            f"audio format {audio.get('format')!r} is not supported", f"{param}.format", "unsupported_content"
        )
    return {"inlineData": {"mimeType": media_type, "data": audio["data"]}}


def _assistant_parts(message: Mapping[str, Any], names: dict[str, str], where: str) -> list[dict[str, Any]]:
    text = shapes.message_text(message.get("content"))
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    calls = message.get("tool_calls")
    legacy = message.get("function_call")
    if not isinstance(calls, list):
        calls = [{"id": None, "function": legacy}] if isinstance(legacy, dict) else []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str) or not name:
            raise invalid("a tool call needs a function name", f"{where}.tool_calls[{index}].function.name")
        part: dict[str, Any] = {
            "functionCall": {"name": name, "args": shapes.parse_arguments(function.get("arguments"))}
        }
        signature = _thought_signature(call)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
        if call.get("id") is not None:
            names[str(call["id"])] = name
    return parts


def _thought_signature(call: Mapping[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _function_response(message: Mapping[str, Any], names: dict[str, str], where: str) -> dict[str, Any]:
    """A tool result; Gemini matches it by function name, found from the call it answers."""
    call_id = message.get("tool_call_id")
    name = names.get(str(call_id)) if call_id is not None else None
    if name is None and isinstance(message.get("name"), str) and message["name"]:
        name = message["name"]
    if name is None:
        raise invalid("tool message answers no earlier assistant tool call", f"{where}.tool_call_id")
    text = shapes.message_text(message.get("content"))
    return {"functionResponse": {"name": name, "response": function_response_object(text)}}


def function_response_object(text: str) -> dict[str, Any]:
    """A JSON object result as is; anything else under ``output`` (Gemini's documented key)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"output": text}


def _declaration(tool: Mapping[str, Any]) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool["name"]}
    if tool["description"]:
        declaration["description"] = tool["description"]
    declaration["parametersJsonSchema"] = tool["parameters"]
    return declaration


def _calling_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in TOOL_MODES:
        return {"mode": TOOL_MODES[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        if isinstance(name, str) and name:
            return {"mode": "ANY", "allowedFunctionNames": [name]}
    raise invalid("tool_choice must be auto, none, required or a named function", "tool_choice")


def generation_config(body: Mapping[str, Any]) -> dict[str, Any]:
    """``generationConfig`` from the chat request's limits, sampling and output format."""
    config: dict[str, Any] = {}
    limit = shapes.max_tokens(body)
    if limit is not None:
        config["maxOutputTokens"] = limit
    for name, gemini_name in SAMPLING.items():
        if _is_number(body.get(name)):
            config[gemini_name] = body[name]
    stops = shapes.stop_sequences(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    for name, gemini_name in (("n", "candidateCount"), ("seed", "seed")):
        if _is_number(body.get(name)) and isinstance(body[name], int):
            config[gemini_name] = body[name]
    config.update(_response_format(body.get("response_format")))
    return config


def _response_format(value: Any) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = value.get("json_schema") if isinstance(value, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise invalid("json_schema response format needs a schema", "response_format.json_schema.schema")
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    if value is None or kind == "text":
        return {}
    raise invalid("response_format must be text, json_object or json_schema", "response_format")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
