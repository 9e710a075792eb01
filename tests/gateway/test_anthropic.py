"""The Messages ↔ chat translation on its own: the shapes that the SDK tests do not reach."""

from __future__ import annotations

import orjson
import pytest

from sovstack.core.errors import BadInput
from sovstack.gateway import anthropic


def test_blocks_that_have_no_chat_counterpart() -> None:
    chat = anthropic.chat_request({"model": "m", "max_tokens": 5, "top_k": 3, "messages": [
        {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                          {"type": "text", "text": "ok"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                                      "content": [{"type": "text", "text": "boom"}]}]}],
        "system": [{"type": "text", "text": "A. "}, {"type": "text", "text": "B."}],
        "tool_choice": {"type": "tool", "name": "f"}})
    assert chat["messages"] == [
        {"role": "system", "content": "A. B."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "content": "ok"},
        {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}} and "top_k" not in chat


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": [], "max_tokens": 5}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": True}, "max_tokens"),
    ({"messages": [{"role": "system", "content": "x"}], "max_tokens": 5}, "messages.0"),
    ({"messages": [{"role": "user", "content": 7}], "max_tokens": 5}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "document"}]}], "max_tokens": 5}, "messages.0.content.0"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}], "max_tokens": 5},
     "messages.0.content.0.source"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "tools": [{"description": "no name"}]},
     "tools.0"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "tool_choice": {"type": "maybe"}},
     "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "system": 3}, "system"),
])
def test_bad_requests_name_their_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(BadInput) as bad:
        anthropic.chat_request({"model": "m", **body})
    assert bad.value.field == field


def test_an_answer_with_broken_tool_json_keeps_what_the_model_said() -> None:
    message = anthropic.message_from_chat({"choices": [{"finish_reason": "length", "message": {
        "content": "", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{bad"}}]}}]}, "m")
    assert message["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {"_raw": "{bad"}}]
    assert message["stop_reason"] == "max_tokens" and message["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_outbound_merges_turns_and_reads_data_urls() -> None:
    body = anthropic.messages_request({"max_completion_tokens": 12, "tool_choice": "none", "tools": [
        {"type": "function", "function": {"name": "f"}}], "messages": [
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}}]},
        {"role": "user", "content": "again"}]}, "claude-x")
    assert body["system"] == "Rules." and body["max_tokens"] == 12 and body["tool_choice"] == {"type": "none"}
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
        {"type": "text", "text": "again"}]}]
    assert body["tools"] == [{"name": "f", "description": "", "input_schema": {"type": "object"}}]


def test_an_error_event_and_garbage_end_the_chunk_stream() -> None:
    chunks = anthropic.ChunkStream()
    assert chunks.feed("event: ping") == [] and chunks.feed('data: {"type": "ping"}') == []
    with pytest.raises(anthropic.StreamError):
        chunks.feed('data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}')
    with pytest.raises(orjson.JSONDecodeError):
        chunks.feed("data: <html>")


def test_the_message_stream_ignores_what_is_not_an_event() -> None:
    events = anthropic.MessageStream("m")
    assert events.feed(b": keep-alive\n\n") == b"" and events.feed(b"data: [1, 2]\n\n") == b""
    end = events.feed(b"data: [DONE]\n\n").decode()
    assert end.startswith("event: message_delta") and "event: message_stop" in end
    assert "content_block_stop" not in end  # no block was opened
