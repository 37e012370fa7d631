"""Properties of the Gemini chat translation: nothing in a valid OpenAI chat request is lost.

Any conversation of system/developer/user/assistant/tool messages (text, tool calls with
JSON arguments, tool results answering every call in any order) becomes Gemini contents
with the same texts and calls, in order, under Gemini's roles; every tool result names the
function of the call it answers; a reply's function calls come back as tool calls that
translate to the same ``functionCall`` parts.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.providers import gemini_chat, gemini_reply

Part = dict[str, Any]

texts = st.text(min_size=1, max_size=24)
names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
signatures = st.none() | st.from_regex(r"[A-Za-z0-9+/]{4,16}={0,2}", fullmatch=True)


def expected_response(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"output": text}
    return value if isinstance(value, dict) else {"output": text}


@st.composite
def content_of(draw: st.DrawFn, pieces: list[str]) -> Any:
    """The same texts as a plain string (one piece) or as a list of text parts."""
    if len(pieces) == 1 and draw(st.booleans()):
        return pieces[0]
    return [{"type": "text", "text": piece} for piece in pieces]


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Part], list[tuple[str, Part]]]:
    """``(messages, expected system parts, expected (role, part) sequence)``."""
    messages: list[dict[str, Any]] = []
    system: list[Part] = []
    turns: list[tuple[str, Part]] = []
    serial = itertools.count()
    for kind in draw(st.lists(st.sampled_from(["system", "developer", "user", "assistant", "tools"]), min_size=1)):
        if kind in ("system", "developer"):
            pieces = draw(st.lists(texts, min_size=1, max_size=2))
            messages.append({"role": kind, "content": draw(content_of(pieces))})
            system.append({"text": "".join(pieces)})
        elif kind == "user":
            pieces = draw(st.lists(texts, min_size=1, max_size=3))
            messages.append({"role": "user", "content": draw(content_of(pieces))})
            turns += [("user", {"text": piece}) for piece in pieces]
        elif kind == "assistant":
            pieces = draw(st.lists(texts, min_size=1, max_size=2))
            messages.append({"role": "assistant", "content": draw(content_of(pieces))})
            turns.append(("model", {"text": "".join(pieces)}))
        else:
            _tool_turn(draw, serial, messages, turns)
    return messages, system, turns


def _tool_turn(
    draw: st.DrawFn, serial: itertools.count[int], messages: list[dict[str, Any]], turns: list[tuple[str, Part]]
) -> None:
    """An assistant message with tool calls, then a result for every call in some order."""
    preface = draw(st.none() | texts)
    calls = []
    for _ in range(draw(st.integers(1, 3))):
        name, args, signature = draw(names), draw(json_objects), draw(signatures)
        indent = draw(st.sampled_from([None, 2]))
        call: dict[str, Any] = {
            "id": f"{draw(st.text(max_size=6))}#{next(serial)}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, indent=indent)},
        }
        part: Part = {"functionCall": {"name": name, "args": args}}
        if signature:
            call["extra_content"] = {"google": {"thought_signature": signature}}
            part["thoughtSignature"] = signature
        calls.append(call)
        turns.append(("model", part))
    if preface is not None:
        turns.insert(len(turns) - len(calls), ("model", {"text": preface}))
    messages.append({"role": "assistant", "content": preface, "tool_calls": calls})
    for call in draw(st.permutations(calls)):
        result = draw(json_objects.map(json.dumps) | texts)
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        response = {"name": call["function"]["name"], "response": expected_response(result)}
        turns.append(("user", {"functionResponse": response}))


@settings(max_examples=200, deadline=None)
@given(conversations())
def test_translation_keeps_every_message_role_text_and_tool_call(
    conversation: tuple[list[dict[str, Any]], list[Part], list[tuple[str, Part]]],
) -> None:
    messages, system, turns = conversation

    payload = gemini_chat.build_generate_content({"model": "gemini-2.0-flash", "messages": messages})

    assert payload.get("systemInstruction", {"parts": []})["parts"] == system
    contents = payload["contents"]
    assert [(content["role"], part) for content in contents for part in content["parts"]] == turns
    assert all(content["parts"] for content in contents)
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(contents))
    for call_turn, answer_turn in itertools.pairwise(contents):
        calls = [part["functionCall"]["name"] for part in call_turn["parts"] if "functionCall" in part]
        answers = [part["functionResponse"]["name"] for part in answer_turn["parts"] if "functionResponse" in part]
        if call_turn["role"] == "model":
            assert sorted(answers) == sorted(calls)


reply_parts = st.lists(
    st.one_of(
        texts.map(lambda text: {"text": text}),
        st.tuples(names, json_objects, signatures).map(
            lambda t: {"functionCall": {"name": t[0], "args": t[1]}, **({"thoughtSignature": t[2]} if t[2] else {})}
        ),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(reply_parts, st.none() | st.from_regex(r"[A-Za-z0-9_-]{1,23}", fullmatch=True))
def test_reply_function_calls_become_unique_tool_calls_that_translate_back_unchanged(
    parts: list[Part], response_id: str | None
) -> None:
    reply: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]}
    if response_id:
        reply["responseId"] = response_id

    result = gemini_reply.chat_from_reply(reply, model="m", created=0, fallback_id="chatcmpl-x")

    message = result["choices"][0]["message"]
    calls = message.get("tool_calls", [])
    function_parts = [part for part in parts if "functionCall" in part]
    text = "".join(part["text"] for part in parts if "text" in part)
    assert len({call["id"] for call in calls}) == len(calls) == len(function_parts)
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        (p["functionCall"]["name"], p["functionCall"]["args"]) for p in function_parts
    ]
    assert message["content"] == (None if calls and not text else text)
    assert result["choices"][0]["finish_reason"] == ("tool_calls" if calls else "stop")

    history = [{"role": "user", "content": "go"}, message]
    history += [{"role": "tool", "tool_call_id": call["id"], "content": "done"} for call in calls]
    sent = gemini_chat.build_generate_content({"messages": history})["contents"]
    assert [part for part in sent[1]["parts"] if "functionCall" in part] == function_parts
    if calls:
        responses = [part["functionResponse"]["name"] for part in sent[2]["parts"]]
        assert responses == [part["functionCall"]["name"] for part in function_parts]
