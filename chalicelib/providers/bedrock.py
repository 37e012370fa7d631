"""Amazon Bedrock adapter: chat and responses over Converse, embeddings over InvokeModel.

Owns the Bedrock Runtime client (boto3, built lazily once per provider, credentials from
the environment or the Lambda role, no retries of its own), the embedding bodies of the
model families Bedrock hosts (Amazon Titan, Cohere) and the translation of botocore's
failures into ``ProviderError``. Chat translation lives in ``bedrock_chat``. There is no
API key: ``ProviderCall.api_key`` is ignored. ``BEDROCK_BASE_URL`` overrides the endpoint.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore import exceptions as boto
from botocore.config import Config
from botocore.parsers import ResponseParserError

from chalicelib.contract import RequestType
from chalicelib.errors import ProviderError
from chalicelib.providers import shapes
from chalicelib.providers.base import ProviderCall, ProviderEnv, ProviderSpec, no_key_needed
from chalicelib.providers.bedrock_chat import chat_from_converse, converse_request
from chalicelib.providers.transport import retry_after_seconds

DEFAULT_REGION = "us-east-1"
REGION_VARIABLES = ("BEDROCK_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
CREDENTIAL_VARIABLES = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
}
COHERE_BATCH = 96  # texts per InvokeModel call that Cohere Embed on Bedrock accepts
STATUS_BY_CODE: dict[str, int] = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ServiceQuotaExceededException": 400,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}


# embeddings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingCall:
    """One InvokeModel request body and the inputs (by index) it embeds."""

    body: dict[str, Any]
    indexes: tuple[int, ...]


def embedding_calls(model: str, body: Mapping[str, Any]) -> list[EmbeddingCall]:
    """The InvokeModel bodies for an OpenAI-style embeddings request on ``model``."""
    texts = shapes.embedding_inputs(body.get("input"))
    given = body.get("dimensions")
    dimensions = given if isinstance(given, int) and not isinstance(given, bool) else None
    if model.startswith("amazon.titan-embed"):
        return [EmbeddingCall(_titan_body(model, text, dimensions), (i,)) for i, text in enumerate(texts)]
    if model.startswith("cohere.embed"):
        calls = []
        for start in range(0, len(texts), COHERE_BATCH):
            chunk = texts[start : start + COHERE_BATCH]
            cohere: dict[str, Any] = {
                "texts": chunk,
                "input_type": body.get("input_type") or "search_document",
                "embedding_types": ["float"],
            }
            if dimensions is not None:
                cohere["output_dimension"] = dimensions
            calls.append(EmbeddingCall(cohere, tuple(range(start, start + len(chunk)))))
        return calls
    raise ProviderError(
        f"Bedrock embeddings are served for Amazon Titan and Cohere models, not {model}",
        status=400,
        code="unsupported_model",
        param="model",
    )


def _titan_body(model: str, text: str, dimensions: int | None) -> dict[str, Any]:
    """Titan Text v2 takes ``dimensions``/``normalize``; G1 text takes text only; multimodal its config."""
    titan: dict[str, Any] = {"inputText": text}
    if model.startswith("amazon.titan-embed-text-v2"):
        titan["normalize"] = True
        if dimensions is not None:
            titan["dimensions"] = dimensions
    elif model.startswith("amazon.titan-embed-image") and dimensions is not None:
        titan["embeddingConfig"] = {"outputEmbeddingLength": dimensions}
    return titan


def embedding_vectors(reply: Mapping[str, Any]) -> list[list[float]]:
    """The vectors of a Titan (``embedding``) or Cohere (``embeddings``) InvokeModel reply."""
    if isinstance(reply.get("embedding"), list):
        return [_floats(reply["embedding"])]
    found = reply.get("embeddings")
    if isinstance(found, dict):
        found = found.get("float")
    if isinstance(found, list) and found:
        return [_floats(vector) for vector in found]
    raise ProviderError("Bedrock returned an embedding reply without vectors", status=502, code="invalid_response")


def _floats(vector: Any) -> list[float]:
    if not isinstance(vector, list) or not all(isinstance(x, int | float) for x in vector):
        raise ProviderError("Bedrock returned an embedding that is not numbers", status=502, code="invalid_response")
    return [float(x) for x in vector]


def encode_vector(vector: Sequence[float]) -> str:
    """OpenAI's ``encoding_format: "base64"``: little-endian float32 values, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_result(
    model: str, body: Mapping[str, Any], vectors: Sequence[Sequence[float]], tokens: int
) -> dict[str, Any]:
    result = shapes.embedding_list(vectors, model, tokens)
    if body.get("encoding_format") == "base64":
        for item in result["data"]:
            item["embedding"] = encode_vector(item["embedding"])
    return result


# errors --------------------------------------------------------------------------------


def parse_error(error: Exception) -> ProviderError:
    """A botocore failure as a ``ProviderError`` (status from the reply, type from Bedrock's error code)."""
    if isinstance(error, boto.ClientError):
        detail = error.response.get("Error") or {}
        metadata = error.response.get("ResponseMetadata") or {}
        code = str(detail.get("Code") or "")
        code = "" if code.isdigit() else code  # botocore's stand-in when the body named no error
        status = metadata.get("HTTPStatusCode")
        if not isinstance(status, int) or status < 400:
            status = STATUS_BY_CODE.get(code, 500)
        return ProviderError(
            str(detail.get("Message") or f"Bedrock answered HTTP {status}"),
            status=status,
            error_type=code or None,
            code=code or None,
            retry_after_s=retry_after_seconds(metadata.get("HTTPHeaders") or {}),
        )
    if isinstance(error, boto.ReadTimeoutError | boto.ConnectTimeoutError):
        return ProviderError(
            "Bedrock did not answer in time", status=504, error_type="timeout_error", code="provider_timeout"
        )
    if isinstance(error, boto.EndpointConnectionError | boto.ConnectionClosedError | boto.ConnectionError):
        return ProviderError("could not connect to Bedrock", status=502, code="provider_unreachable")
    if isinstance(error, boto.NoCredentialsError | boto.PartialCredentialsError):
        return ProviderError(
            "no AWS credentials are available for Bedrock (use the function's role or AWS_ACCESS_KEY_ID)",
            status=401,
            error_type="authentication_error",
            code="missing_credentials",
        )
    if isinstance(error, boto.ParamValidationError):
        report = str(error).replace("\n", " ")
        return ProviderError(f"Bedrock cannot take this request: {report}", status=400, code="invalid_request")
    return ProviderError("the Bedrock request failed", status=502, code="provider_request_failed")


# the provider --------------------------------------------------------------------------


class BedrockProvider:
    """Calls Bedrock Runtime through one lazily built boto3 client (thread-safe once built)."""

    def __init__(self, env: ProviderEnv) -> None:
        self._env = env
        self._client: Any = None
        self._lock = threading.Lock()
        self._handlers: dict[RequestType, Callable[[ProviderCall], dict[str, Any]]] = {
            RequestType.CHAT_COMPLETION: self._chat,
            RequestType.RESPONSES: self._responses,
            RequestType.EMBEDDING: self._embeddings,
        }

    def invoke(self, call: ProviderCall) -> dict[str, Any]:
        return self._handlers[call.request_type](call)

    def _chat(self, call: ProviderCall) -> dict[str, Any]:
        return self._converse(call.model, call.body)

    def _responses(self, call: ProviderCall) -> dict[str, Any]:
        return shapes.responses_from_chat(self._converse(call.model, shapes.chat_request_from_responses(call.body)))

    def _converse(self, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
        request = converse_request(model, body)
        reply = self._send(lambda client: client.converse(**request))
        return chat_from_converse(reply, model, int(self._env.clock.now()))

    def _embeddings(self, call: ProviderCall) -> dict[str, Any]:
        vectors: dict[int, list[float]] = {}
        tokens = 0
        for part in embedding_calls(call.model, call.body):
            reply, headers = self._invoke_model(call.model, part.body)
            found = embedding_vectors(reply)
            if len(found) != len(part.indexes):
                raise ProviderError(
                    "Bedrock returned a different number of embeddings", status=502, code="invalid_response"
                )
            vectors.update(zip(part.indexes, found, strict=True))
            tokens += _token_count(reply.get("inputTextTokenCount", headers.get("x-amzn-bedrock-input-token-count")))
        return embedding_result(call.model, call.body, [vectors[i] for i in sorted(vectors)], tokens)

    def _invoke_model(self, model: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        def send(client: Any) -> dict[str, Any]:
            reply = client.invoke_model(
                modelId=model, body=json.dumps(body).encode(), contentType="application/json", accept="application/json"
            )
            return {"body": reply["body"].read(), "ResponseMetadata": reply.get("ResponseMetadata") or {}}

        reply = self._send(send)
        try:
            parsed = json.loads(reply["body"])
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ProviderError(
                "Bedrock returned a body that is not a JSON object", status=502, code="invalid_response"
            )
        return parsed, reply["ResponseMetadata"].get("HTTPHeaders") or {}

    def _send(self, operation: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        try:
            return operation(self.client())
        except (boto.BotoCoreError, boto.ClientError) as error:
            raise parse_error(error) from None
        except (ResponseParserError, AttributeError, TypeError, ValueError):  # botocore choking on the reply
            raise ProviderError(
                "Bedrock returned a reply that cannot be read", status=502, code="invalid_response"
            ) from None

    def client(self) -> Any:
        """The ``bedrock-runtime`` client, built on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = build_client(self._env)
        return self._client


def _token_count(value: Any) -> int:
    """A token count from a reply field or a header (``X-Amzn-Bedrock-Input-Token-Count``)."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return int(text) if text.isdigit() else 0


def region(env: ProviderEnv) -> str:
    return next((value for name in REGION_VARIABLES if (value := env.variable(name))), DEFAULT_REGION)


def build_client(env: ProviderEnv) -> Any:
    """A ``bedrock-runtime`` client: one attempt per call (the worker retries), the gateway's timeouts.

    Credentials given in ``env`` (the Lambda runtime puts the role's there) are used as given;
    otherwise boto3's own chain finds them.
    """
    given = {arg: env.variable(name) for arg, name in CREDENTIAL_VARIABLES.items()}
    explicit = given["aws_access_key_id"] and given["aws_secret_access_key"]
    session = boto3.session.Session(**({k: v for k, v in given.items() if v} if explicit else {}))
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},  # "max_attempts": 1 would still retry once
        connect_timeout=env.settings.provider_connect_timeout_s,
        read_timeout=env.settings.provider_read_timeout_s,
    )
    return session.client(
        "bedrock-runtime",
        region_name=region(env),
        endpoint_url=env.variable("BEDROCK_BASE_URL"),
        config=config,
    )


SPEC = ProviderSpec(
    "bedrock",
    frozenset({RequestType.CHAT_COMPLETION, RequestType.RESPONSES, RequestType.EMBEDDING}),
    BedrockProvider,
    key_variables=("BEDROCK_API_KEY",),
    key_required=no_key_needed,
)
