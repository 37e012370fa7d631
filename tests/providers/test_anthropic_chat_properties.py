"""Properties of the OpenAI chat ↔ Anthropic Messages translation (pure, no HTTP)."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.providers.anthropic_chat import chat_from_message, messages_request

Json = dict[str, Any]

TEXT = st.text(min_size=1, max_size=20)
IDS = st.from_regex(r"toolu_[A-Za-z0-9]{1,16}", fullmatch=True)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,20}", fullmatch=True)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
ARGUMENTS = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)
TEXT_PARTS = st.lists(TEXT.map(lambda text: {"type": "text", "text": text}), min_size=1, max_size=3)
CONTENT = TEXT | TEXT_PARTS

TOOL_CALL = st.builds(
    lambda call_id, name, arguments: {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    },
    IDS,
    NAMES,
    ARGUMENTS,
)
SYSTEM = st.builds(
    lambda role, content: {"role": role, "content": content}, st.sampled_from(["system", "developer"]), CONTENT
)
USER = st.builds(lambda content: {"role": "user", "content": content}, CONTENT)
ASSISTANT = st.builds(
    lambda content, calls: {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})},
    st.none() | CONTENT,
    st.lists(TOOL_CALL, max_size=3),
).filter(lambda message: message["content"] is not None or "tool_calls" in message)
TOOL = st.builds(
    lambda call_id, content: {"role": "tool", "tool_call_id": call_id, "content": content},
    IDS,
    st.text(max_size=20) | TEXT_PARTS,
)
MESSAGES = st.lists(st.one_of(SYSTEM, USER, ASSISTANT, TOOL), min_size=1, max_size=12)


def texts(content: Any) -> list[str]:
    if content is None:
        return []
    return [content] if isinstance(content, str) else [part["text"] for part in content]


def expected_blocks(messages: list[Json]) -> list[tuple[str, Json]]:
    """Every non-system message as ``(anthropic role, block)`` pairs, in order."""
    found: list[tuple[str, Json]] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message["tool_call_id"],
                "content": "".join(texts(message["content"])),
            }
            found.append(("user", result))
        elif role in ("user", "assistant"):
            found += [(role, {"type": "text", "text": text}) for text in texts(message["content"])]
            for call in message.get("tool_calls", []):
                function = call["function"]
                block = {
                    "type": "tool_use",
                    "id": call["id"],
                    "name": function["name"],
                    "input": json.loads(function["arguments"]),
                }
                found.append(("assistant", block))
    return found


@settings(deadline=None)
@given(MESSAGES, st.integers(min_value=1, max_value=100_000) | st.none())
def test_every_message_text_and_tool_call_survives_translation_in_order(
    messages: list[Json], limit: int | None
) -> None:
    chat = {"model": "anthropic/claude", "messages": messages, **({"max_tokens": limit} if limit else {})}

    payload = messages_request("claude", chat)

    turns = payload["messages"]
    assert [(turn["role"], block) for turn in turns for block in turn["content"]] == expected_blocks(messages)
    assert all(turn["content"] for turn in turns)
    assert all(left["role"] != right["role"] for left, right in pairwise(turns))
    assert {turn["role"] for turn in turns} <= {"user", "assistant"}
    system = ["".join(texts(m["content"])) for m in messages if m["role"] in ("system", "developer")]
    if not system:
        assert "system" not in payload
    elif len(system) == 1:
        assert payload["system"] == system[0]
    else:
        assert payload["system"] == [{"type": "text", "text": text} for text in system]
    assert (payload["model"], payload["max_tokens"]) == ("claude", limit or 4096)
    assert json.loads(json.dumps(payload)) == payload


FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    None: "stop",
}
TEXT_BLOCK = st.builds(lambda text: {"type": "text", "text": text}, st.text(max_size=20))
TOOL_USE = st.builds(lambda i, n, a: {"type": "tool_use", "id": i, "name": n, "input": a}, IDS, NAMES, ARGUMENTS)
THINKING = st.builds(lambda text: {"type": "thinking", "thinking": text, "signature": "sig"}, st.text(max_size=10))
COUNTS = st.integers(min_value=0, max_value=10**7)


@settings(deadline=None)
@given(
    st.lists(st.one_of(TEXT_BLOCK, TOOL_USE, THINKING), max_size=6),
    st.sampled_from(list(FINISH)),
    st.tuples(COUNTS, COUNTS, COUNTS, COUNTS),
)
def test_every_reply_text_tool_use_and_token_count_reaches_the_chat_completion(
    content: list[Json], stop_reason: str | None, counts: tuple[int, int, int, int]
) -> None:
    fresh, written, read, output = counts
    usage = {"input_tokens": fresh, "cache_creation_input_tokens": written, "cache_read_input_tokens": read}
    reply = {
        "id": "msg_01X",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": output},
    }

    result = chat_from_message(reply, "claude", 1234)

    [choice] = result["choices"]
    text_blocks = [block["text"] for block in content if block["type"] == "text"]
    assert choice["message"]["content"] == ("".join(text_blocks) if text_blocks else None)
    calls = [
        (call["id"], call["type"], call["function"]["name"], json.loads(call["function"]["arguments"]))
        for call in choice["message"].get("tool_calls", [])
    ]
    uses = [block for block in content if block["type"] == "tool_use"]
    assert calls == [(block["id"], "function", block["name"], block["input"]) for block in uses]
    assert choice["finish_reason"] == FINISH[stop_reason]
    prompt = fresh + written + read
    assert result["usage"] == {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
    assert (result["id"], result["model"], result["created"], result["object"]) == (
        "msg_01X",
        "claude-x",
        1234,
        "chat.completion",
    )
