"""Result builders for the mock provider, one per request type, in OpenAI's exact shapes.

Each builder is a pure function of the request body, the model name and a timestamp,
so the same request always gets the same answer (ids derive from the body's hash).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.contract import RequestType
from chalicelib.multipart import Files
from chalicelib.providers.mock_media import png_solid, wav_tone

DEFAULT_DIMENSIONS = 8
ResultBuilder = Callable[[Mapping[str, Any], str, int], dict[str, Any]]


def build_result(
    request_type: RequestType, body: Mapping[str, Any], files: Files, model: str, now_s: int
) -> dict[str, Any]:
    if request_type in FORM_BUILDERS:
        return FORM_BUILDERS[request_type](body, files, model, now_s)
    return BUILDERS[request_type](body, model, now_s)


def _digest(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _tokens(text: str) -> int:
    return max(1, len(_words(text))) if text else 0


def content_text(content: Any) -> str:
    """Text of an OpenAI message ``content``: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(part for part in parts if part)
    return ""


def _last_user_text(items: list[Any]) -> str:
    texts = [content_text(m.get("content")) for m in items if isinstance(m, dict)]
    users = [content_text(m.get("content")) for m in items if isinstance(m, dict) and m.get("role") == "user"]
    return (users or texts or [""])[-1]


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return " ".join(str(p) for p in prompt)
    return ""


def chat(body: Mapping[str, Any], model: str, now_s: int) -> dict[str, Any]:
    messages = list(body.get("messages") or [])
    reply = _last_user_text(messages)
    prompt_tokens = sum(_tokens(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    completion_tokens = _tokens(reply)
    return {
        "id": f"chatcmpl-mock-{_digest(body)}",
        "object": "chat.completion",
        "created": now_s,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(prompt_tokens, completion_tokens),
    }


def text_completion(body: Mapping[str, Any], model: str, now_s: int) -> dict[str, Any]:
    text = _prompt_text(body.get("prompt"))
    return {
        "id": f"cmpl-mock-{_digest(body)}",
        "object": "text_completion",
        "created": now_s,
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(_tokens(text), _tokens(text)),
    }


def responses(body: Mapping[str, Any], model: str, now_s: int) -> dict[str, Any]:
    given = body.get("input")
    text = given if isinstance(given, str) else _last_user_text(list(given or []))
    digest = _digest(body)
    return {
        "id": f"resp_mock{digest}",
        "object": "response",
        "created_at": now_s,
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_mock{digest}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": _tokens(text),
            "output_tokens": _tokens(text),
            "total_tokens": 2 * _tokens(text),
        },
    }


def embedding(body: Mapping[str, Any], model: str, now_s: int) -> dict[str, Any]:
    given = body.get("input")
    inputs = given if isinstance(given, list) else [given]
    dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
    data = [
        {"object": "embedding", "index": i, "embedding": unit_vector(json.dumps(item), dimensions)}
        for i, item in enumerate(inputs)
    ]
    tokens = sum(_tokens(_prompt_text(item)) for item in inputs)
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def unit_vector(seed: str, dimensions: int) -> list[float]:
    """A deterministic unit-length vector for ``seed``."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        block = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        raw.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    vector = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def speech(body: Mapping[str, Any], model: str, now_s: int) -> dict[str, Any]:
    text = str(body.get("input", ""))
    audio = wav_tone(text)
    return {
        "audio": base64.b64encode(audio).decode("ascii"),
        "content_type": "audio/wav",
        "usage": {"input_tokens": _tokens(text), "output_tokens": 0, "total_tokens": _tokens(text)},
    }


def image_generation(body: Mapping[str, Any], model: str, now_s: int) -> dict[str, Any]:
    prompt = str(body.get("prompt", ""))
    count = body.get("n") or 1
    data = []
    for i in range(count):
        encoded = base64.b64encode(png_solid(f"{prompt}:{i}", body.get("size"))).decode("ascii")
        item = (
            {"url": f"data:image/png;base64,{encoded}"}
            if body.get("response_format") == "url"
            else {"b64_json": encoded}
        )
        item["revised_prompt"] = prompt
        data.append(item)
    return {"created": now_s, "data": data}


def rerank(body: Mapping[str, Any], model: str, now_s: int) -> dict[str, Any]:
    query = set(_words(str(body.get("query", ""))))
    documents = list(body.get("documents") or [])
    scored = []
    for index, document in enumerate(documents):
        text = document.get("text", "") if isinstance(document, dict) else str(document)
        words = set(_words(text))
        overlap = len(query & words) / len(query | words) if query | words else 0.0
        entry: dict[str, Any] = {"index": index, "relevance_score": round(overlap, 6)}
        if body.get("return_documents"):
            entry["document"] = {"text": text}
        scored.append(entry)
    scored.sort(key=lambda e: (-e["relevance_score"], e["index"]))
    top_n = body.get("top_n") or len(scored)
    return {
        "id": f"rerank-mock-{_digest(body)}",
        "results": scored[:top_n],
        "model": model,
        "usage": {"total_tokens": sum(_tokens(str(d)) for d in documents) + len(query)},
    }


def ocr(body: Mapping[str, Any], model: str, now_s: int) -> dict[str, Any]:
    document = body.get("document") or {}
    kind = document.get("type", "document_url")
    location = document.get(kind)
    if isinstance(location, dict):
        location = location.get("url")
    return {
        "pages": [
            {
                "index": 0,
                "markdown": f"# Mock OCR\n\nSource: {location}",
                "images": [],
                "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
            }
        ],
        "model": model,
        "document_annotation": None,
        "usage_info": {"pages_processed": 1, "doc_size_bytes": None},
    }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def transcription(body: Mapping[str, Any], files: Files, model: str, now_s: int) -> dict[str, Any]:
    audio = files["file"][0]
    try:
        heard = audio.data.decode("utf-8").strip()
    except UnicodeDecodeError:
        heard = ""
    text = heard or f"{audio.filename}: {len(audio.data)} bytes of {audio.content_type}"
    return {"text": text, "usage": {"type": "duration", "seconds": max(1, len(audio.data) // 16000)}}


def image_edit(body: Mapping[str, Any], files: Files, model: str, now_s: int) -> dict[str, Any]:
    images = [*files.get("image", []), *files.get("image[]", [])]
    seed = f"{body.get('prompt', '')}:" + ":".join(hashlib.sha256(image.data).hexdigest() for image in images)
    return image_generation({**body, "prompt": seed, "n": int(body.get("n") or 1)}, model, now_s)


FormBuilder = Callable[[Mapping[str, Any], Files, str, int], dict[str, Any]]
FORM_BUILDERS: dict[RequestType, FormBuilder] = {
    RequestType.TRANSCRIPTION: transcription,
    RequestType.IMAGE_EDIT: image_edit,
    RequestType.IMAGE_VARIATION: image_edit,
}

BUILDERS: dict[RequestType, ResultBuilder] = {
    RequestType.TEXT_COMPLETION: text_completion,
    RequestType.CHAT_COMPLETION: chat,
    RequestType.RESPONSES: responses,
    RequestType.EMBEDDING: embedding,
    RequestType.SPEECH: speech,
    RequestType.IMAGE_GENERATION: image_generation,
    RequestType.RERANK: rerank,
    RequestType.OCR: ocr,
}
