"""Server-sent events read as the specification says, not as one server happens to write them.

An upstream may write ``data:{…}`` or ``data: {…}`` (one space after the colon is dropped, no more), end
lines with ``\\r\\n``, ``\\n`` or a lone ``\\r``, split one event's data over several ``data:`` lines
(joined with ``\\n``), send comments (``: keep-alive``) and fields we do not use (``id:``, ``retry:``).
An event ends at a blank line; an event with no data is not dispatched.
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Event:
    """One dispatched event: its ``data`` (lines joined by ``\\n``) and its ``event`` type ('' when unnamed)."""

    data: str
    event: str = ""


class Parser:
    """Incremental: ``feed`` bytes as they arrive, get the events they complete; ``comments`` counts comments."""

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[str] = []
        self._event = ""
        self._cr = False  # the last chunk ended with \r: a \n starting the next one belongs to it
        self.comments = 0

    def feed(self, chunk: bytes) -> list[Event]:
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        text = self._pending + chunk
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._pending = text.split(b"\n")
        events: list[Event] = []
        for raw in lines:
            self._line(raw.decode("utf-8", "replace"), events)
        return events

    def close(self) -> list[Event]:
        """The end of the stream: an unterminated last line counts, an event not ended by a blank line does
        not (the specification discards it)."""
        events: list[Event] = []
        if self._pending:
            self._line(self._pending.decode("utf-8", "replace"), events)
            self._pending = b""
        return events

    def _line(self, line: str, events: list[Event]) -> None:
        if not line:
            if self._data:
                events.append(Event("\n".join(self._data), self._event))
            self._data, self._event = [], ""
            return
        if line[0] == ":":
            self.comments += 1
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
