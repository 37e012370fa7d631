"""A fake OpenAI API: a real HTTP server on 127.0.0.1 answering in OpenAI's wire format.

Serves ``/v1/chat/completions``, ``/v1/completions``, ``/v1/responses``, ``/v1/embeddings``,
``/v1/audio/speech`` (``audio/mpeg`` bytes) and ``/v1/images/generations`` with bodies shaped
as OpenAI's API reference documents them, echoing the request's model; and the multipart
routes ``/v1/audio/transcriptions`` (``{"text"}`` JSON, or plain text for ``text``/``srt``/
``vtt``), ``/v1/images/edits`` (``image`` or repeated ``image[]``, optional ``mask``) and
``/v1/images/variations``, answering OpenAI's 400 when a required part is missing. It records
every request (``forms()`` parses the multipart ones), checks ``Authorization: Bearer
<api_key>`` (401 ``invalid_api_key`` otherwise) and can be scripted, per path, to answer an
error, a raw (non-JSON) body or to stall.

    with OpenAIFake(api_key="sk-test") as fake:
        environ = fake.environ()              # OPENAI_BASE_URL / OPENAI_API_KEY
        fake.script_error("/chat/completions", 429, headers={"retry-after": "2"}, times=1)
        ...
        fake.requests_to("/chat/completions")[0].json
        fake.forms("/audio/transcriptions")[0].file("file").content
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.fake_http import FakeHttpServer, FormPart, Json, RecordedRequest, Reply, form_parts, json_reply

PREFIX = "/v1"
SPEECH_AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + bytes(range(64))
PNG_PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
AUDIO_TYPES = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav"}
NO_KEY_HINT = "You need to provide your API key in an Authorization header using Bearer auth."
KEYS_HINT = "You can find your API key at https://platform.openai.com/account/api-keys."


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> Json:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


DEFAULT_ERRORS: dict[int, Json] = {
    400: error_body("Invalid request.", "invalid_request_error"),
    404: error_body("The model `gpt-nope` does not exist.", "invalid_request_error", code="model_not_found"),
    408: error_body("Request timed out.", "timeout_error"),
    409: error_body("Conflict.", "invalid_request_error"),
    429: error_body("Rate limit reached for requests.", "requests", code="rate_limit_exceeded"),
    500: error_body("The server had an error while processing your request. Sorry about that!", "server_error"),
    503: error_body("The engine is currently overloaded, please try again later.", "server_error"),
}


def masked(key: str) -> str:
    """A key as OpenAI's 401 message shows it: a short prefix, stars, the last four characters."""
    return key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 7 else "*" * len(key)


class OpenAIFake(FakeHttpServer):
    """Start with ``with`` (or ``start()``/``stop()``); ``api_key=None`` accepts any caller.

    The key is checked before any scripted answer, as OpenAI authenticates before anything else.
    """

    def __init__(self, api_key: str | None = "sk-test") -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return f"{self.root_url}{PREFIX}"

    def environ(self) -> dict[str, str]:
        """The variables that point the gateway's OpenAI provider at this fake."""
        return {"OPENAI_BASE_URL": self.base_url, **({"OPENAI_API_KEY": self.api_key} if self.api_key else {})}

    def full_path(self, path: str) -> str:
        """Paths may be given below ``/v1`` (``/chat/completions``) or in full."""
        return path if path.startswith(PREFIX + "/") else PREFIX + path

    def script_error(
        self,
        path: str,
        status: int,
        body: Json | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer ``status`` with an OpenAI error body (a default one for the status if none)."""
        payload = body if body is not None else DEFAULT_ERRORS.get(status, error_body("Error.", "api_error"))
        self.script_json(path, status, payload, headers, times)

    def forms(self, path: str | None = None) -> list[ReceivedForm]:
        """Every request to a multipart route (or to ``path``), parsed into its parts."""
        paths = {self.full_path(path)} if path else {PREFIX + route for route in FORM_ROUTES}
        return [ReceivedForm.of(r) for r in self.requests if r.path in paths]

    def authorize(self, request: RecordedRequest) -> Reply | None:
        auth = request.headers.get("authorization")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return _json(401, _auth_error(auth))
        return None

    def respond(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path == PREFIX + "/files":
            return _files(request)
        if request.method == "POST" and request.path.removeprefix(PREFIX) in FORM_ROUTES:
            return _form_route(request)
        route = ROUTES.get(request.path.removeprefix(PREFIX)) if request.path.startswith(PREFIX + "/") else None
        if request.method != "POST" or route is None:
            message = f"Invalid URL ({request.method} {request.path})"
            return _json(404, error_body(message, "invalid_request_error"))
        if not isinstance(request.json, dict):
            message = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)"  # noqa: E501
            return _json(400, error_body(message, "invalid_request_error"))
        if not isinstance(request.json.get("model"), str):
            return _json(400, error_body("you must provide a model parameter", "invalid_request_error"))
        status, headers, content = route(request.json)
        headers.setdefault("x-request-id", "req_" + hashlib.sha1(request.body).hexdigest()[:24])
        headers.setdefault("openai-processing-ms", "12")
        return status, headers, content


# OpenAI-shaped replies ------------------------------------------------------------------
def _json(status: int, body: Json) -> Reply:
    return json_reply(status, body)


def _auth_error(auth: str | None) -> Json:
    """OpenAI's 401 bodies: no key at all, or a wrong one (shown masked, never whole)."""
    if not auth or not auth.startswith("Bearer "):
        return error_body("You didn't provide an API key. " + NO_KEY_HINT, "invalid_request_error")
    shown = masked(auth.removeprefix("Bearer "))
    return error_body(
        f"Incorrect API key provided: {shown}. {KEYS_HINT}", "invalid_request_error", code="invalid_api_key"
    )


def _tokens(value: Any) -> int:
    return max(1, len(json.dumps(value).split()))


def _text(value: Any) -> str:
    """The last text in a prompt, input or messages array: what the fake echoes."""
    if isinstance(value, list) and value:
        return _text(value[-1])
    if isinstance(value, dict):
        return _text(value.get("content", value.get("text", "")))
    return value if isinstance(value, str) else ""


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _reply(body: Json, field: str) -> tuple[str, int, int, int]:
    """The echoed text, prompt tokens, output tokens and a creation time for ``body[field]``."""
    text = _text(body.get(field))
    return text, _tokens(body.get(field)), _tokens(text), int(time.time())


def _chat(body: Json) -> Reply:
    text, used, made, now = _reply(body, "messages")
    message: Json = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    usage: Json = {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made}
    usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
    usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
    head = {"id": "chatcmpl-fake0001", "object": "chat.completion", "created": now, "model": body["model"]}
    return _json(200, {**head, "choices": [choice], "usage": usage, "system_fingerprint": "fp_fake"})


def _completion(body: Json) -> Reply:
    text, used, made, now = _reply(body, "prompt")
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
    usage = {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made}
    head = {"id": "cmpl-fake0001", "object": "text_completion", "created": now, "model": body["model"]}
    return _json(200, {**head, "choices": [choice], "usage": usage})


def _responses(body: Json) -> Reply:
    text, used, made, now = _reply(body, "input")
    content = [{"type": "output_text", "text": text, "annotations": []}]
    output = {"type": "message", "id": "msg_fake0001", "status": "completed", "role": "assistant", "content": content}
    usage: Json = {"input_tokens": used, "output_tokens": made, "total_tokens": used + made}
    usage |= {"input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    head = {"id": "resp_fake0001", "object": "response", "created_at": now, "status": "completed"}
    head |= {"error": None, "incomplete_details": None, "model": body["model"]}
    return _json(200, {**head, "output": [output], "usage": usage})


def embedding_vector(text: str, dimensions: int = 8) -> list[float]:
    """The deterministic vector the fake answers for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255 - 0.5, 6) for i in range(dimensions)]


def _embeddings(body: Json) -> Reply:
    inputs = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
    dimensions = _int(body.get("dimensions"), 8)
    data = []
    for index, item in enumerate(inputs):
        vector: Any = embedding_vector(str(item), dimensions)
        if body.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    usage = {"prompt_tokens": _tokens(inputs), "total_tokens": _tokens(inputs)}
    return _json(200, {"object": "list", "data": data, "model": body["model"], "usage": usage})


def _speech(body: Json) -> Reply:
    return 200, {"Content-Type": AUDIO_TYPES.get(str(body.get("response_format", "mp3")), "audio/pcm")}, SPEECH_AUDIO


def _images(body: Json) -> Reply:
    count = _int(body.get("n"), 1)
    if body.get("response_format") == "url":
        data = [{"url": f"https://images.example.invalid/img-{i}.png"} for i in range(count)]
    else:
        data = [{"b64_json": base64.b64encode(PNG_PIXEL).decode()} for _ in range(count)]
    usage = {"input_tokens": _tokens(body.get("prompt")), "output_tokens": 0, "total_tokens": 0}
    return _json(200, {"created": int(time.time()), "data": data, "usage": usage})


def _files(request: RecordedRequest) -> Reply:
    """OpenAI's file upload: multipart ``file`` and ``purpose`` → a ``file`` object."""
    parts = {part.name: part for part in form_parts(request.headers.get("content-type", ""), request.body)}
    upload, purpose = parts.get("file"), parts.get("purpose")
    if upload is None or purpose is None:
        missing = "file" if upload is None else "purpose"
        return _json(400, error_body(f"Missing required parameter: '{missing}'.", "invalid_request_error", missing))
    digest = hashlib.sha1(upload.content).hexdigest()[:24]
    body = {"id": f"file-{digest}", "object": "file", "bytes": len(upload.content), "created_at": int(time.time())}
    body |= {"filename": upload.filename, "purpose": purpose.content.decode(), "status": "processed"}
    return _json(200, body)


# multipart routes -----------------------------------------------------------------------
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
IMAGE_FORMATS = ("url", "b64_json")
CONTENT_TYPE_HINT = "(HINT: If you're using curl, you can pass -F 'key=value' in order to send form data)"


@dataclass(frozen=True)
class ReceivedForm:
    """A multipart request as the fake received it: every part, bytes exactly as sent."""

    path: str
    headers: Mapping[str, str]
    parts: tuple[FormPart, ...]

    @classmethod
    def of(cls, request: RecordedRequest) -> ReceivedForm:
        parts = form_parts(request.headers.get("content-type", ""), request.body)
        return cls(request.path, request.headers, tuple(parts))

    @property
    def fields(self) -> dict[str, str]:
        """The text (non-file) parts, first value per name."""
        found: dict[str, str] = {}
        for part in self.parts:
            if part.filename is None:
                found.setdefault(part.name, part.content.decode())
        return found

    def files(self, *names: str) -> list[FormPart]:
        """The file parts sent under any of ``names``, in order."""
        return [part for part in self.parts if part.filename is not None and part.name in names]

    def file(self, name: str) -> FormPart:
        [part] = self.files(name)
        return part


def transcript(audio: bytes) -> str:
    """What the fake "hears" in ``audio``: deterministic, so tests can compare it."""
    return f"Fake transcript of {len(audio)} bytes, digest {hashlib.sha256(audio).hexdigest()[:12]}."


def _missing(name: str) -> Reply:
    return _json(400, error_body(f"Missing required parameter: '{name}'.", "invalid_request_error", name))


def _invalid(name: str, value: str, allowed: str) -> Reply:
    message = f"Invalid value: '{value}'. Supported values are: {allowed}."
    return _json(400, error_body(message, "invalid_request_error", name, "invalid_value"))


def _form_route(request: RecordedRequest) -> Reply:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        message = f"Invalid Content-Type header ({content_type}), expected multipart/form-data. {CONTENT_TYPE_HINT}"
        return _json(400, error_body(message, "invalid_request_error"))
    form = ReceivedForm.of(request)
    count = form.fields.get("n", "1")
    if not count.isdigit() or not 1 <= int(count) <= 10:
        return _json(400, error_body(f"{count!r} is not valid for n: between 1 and 10", "invalid_request_error", "n"))
    return FORM_ROUTES[request.path.removeprefix(PREFIX)](form)


def _transcription(form: ReceivedForm) -> Reply:
    fields, audio = form.fields, form.files("file")
    if not audio:
        return _missing("file")
    if "model" not in fields:
        return _missing("model")
    fmt = fields.get("response_format", "json")
    if fmt not in TRANSCRIPT_FORMATS:
        return _invalid("response_format", fmt, ", ".join(TRANSCRIPT_FORMATS))
    temperature = fields.get("temperature", "0")
    try:
        if not 0 <= float(temperature) <= 1:
            raise ValueError(temperature)
    except ValueError:
        return _invalid("temperature", temperature, "a number between 0 and 1")
    text, seconds = transcript(audio[0].content), max(1, len(audio[0].content) // 16000)
    plain = {
        "text": f"{text}\n",
        "srt": f"1\n00:00:00,000 --> 00:00:{seconds:02d},000\n{text}\n\n",
        "vtt": f"WEBVTT\n\n00:00:00.000 --> 00:00:{seconds:02d}.000\n{text}\n\n",
    }
    if fmt in plain:
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, plain[fmt].encode()
    usage = {"type": "duration", "seconds": seconds}
    if fmt == "json":
        return _json(200, {"text": text, "usage": usage})
    segment = {"id": 0, "seek": 0, "start": 0.0, "end": float(seconds), "text": text, "tokens": [50364]}
    segment |= {"temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01}
    head = {"task": "transcribe", "language": fields.get("language", "english"), "duration": float(seconds)}
    return _json(200, {**head, "text": text, "segments": [segment], "usage": usage})


def _image_reply(form: ReceivedForm, prompt: str | None) -> Reply:
    fmt = form.fields.get("response_format", "b64_json")
    if fmt not in IMAGE_FORMATS:
        return _invalid("response_format", fmt, ", ".join(IMAGE_FORMATS))
    body: Json = {"n": int(form.fields.get("n", "1")), "response_format": fmt, "prompt": prompt}
    status, headers, content = _images(body)
    if prompt is None:  # variations (dall-e-2) report no usage
        reply = json.loads(content)
        return _json(status, {"created": reply["created"], "data": reply["data"]})
    return status, headers, content


def _image_edit(form: ReceivedForm) -> Reply:
    if not form.files("image", "image[]"):
        return _missing("image")
    prompt = form.fields.get("prompt")
    if not prompt:
        return _missing("prompt")
    return _image_reply(form, prompt)


def _image_variation(form: ReceivedForm) -> Reply:
    if not form.files("image"):
        return _missing("image")
    return _image_reply(form, None)


FORM_ROUTES: dict[str, Callable[[ReceivedForm], Reply]] = {
    "/audio/transcriptions": _transcription,
    "/images/edits": _image_edit,
    "/images/variations": _image_variation,
}

ROUTES: dict[str, Callable[[Json], Reply]] = {
    "/chat/completions": _chat,
    "/completions": _completion,
    "/responses": _responses,
    "/embeddings": _embeddings,
    "/audio/speech": _speech,
    "/images/generations": _images,
}


@pytest.fixture
def openai_fake() -> Iterator[OpenAIFake]:
    """A running fake accepting ``sk-test``; import into a conftest to share it."""
    with OpenAIFake(api_key="sk-test") as fake:
        yield fake
