"""A decoder of server-sent events (the WHATWG "text/event-stream" format), fed one line at a time.

httpx splits the stream into lines (``iter_lines``/``aiter_lines``); the decoder turns them into
events, remembers the last event id (sent back as ``Last-Event-ID`` on reconnect) and the server's
``retry`` hint. Comment lines (``: keepalive``) dispatch nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str          # "message" when the server named none
    data: str
    id: str | None      # the last event id in effect when this event was dispatched


class SSEDecoder:
    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its end-of-line); return the event a blank line completes, if any."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isdigit():
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        ev = ServerSentEvent(self._event or "message", "\n".join(self._data), self.last_event_id)
        self._event, self._data = "", []
        return ev
