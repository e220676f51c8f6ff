"""JSON-RPC 1.0 over a byte stream, as OVSDB uses it (RFC 7047 section 4).

Messages are JSON values written one after another with nothing required
between them (OVS writes no newline), so the stream is split by tracking
bracket depth outside strings rather than by lines.  Only objects and arrays
may stand at the top level: a stray scalar cannot be delimited reliably, so
it is a framing error and the connection is closed.

Sans-I/O: :class:`JsonSplitter` takes bytes and returns parsed values;
:func:`parse_message` classifies one value; the builders return the dicts to
send and :func:`encode` their bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_MESSAGE = 64 << 20
# json.loads recurses per nesting level; stay well below the interpreter's limit.
MAX_DEPTH = 256

_WS = b" \t\r\n"
_NOT_WS = re.compile(rb"[^ \t\r\n]")
_STRUCT = re.compile(rb'["{}\[\]]')
_IN_STRING = re.compile(rb'["\\]')


class FramingError(Exception):
    """The stream cannot be split into JSON values any more; close it."""


class JsonSplitter:
    """Concatenated JSON values in, parsed values out (incremental, O(n))."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE):
        self.max_message = max_message
        self._buf = bytearray()
        self._pos = 0  # next byte to scan
        self._start = -1  # where the value being scanned began, -1 between values
        self._depth = 0
        self._in_string = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Any]:
        """The values completed by ``data``; FramingError once the stream is broken."""
        self._buf += data
        out = []
        buf = self._buf
        while True:
            end = self._scan()
            if end is None:
                break
            text = bytes(buf[self._start:end])
            del buf[:end]
            self._pos = 0
            self._start = -1
            out.append(_loads(text))
        if self._start >= 0 and self._pos - self._start > self.max_message:
            raise FramingError(f"a message is longer than the limit of {self.max_message} "
                               "bytes")
        if self._start < 0:
            # Only whitespace is buffered: drop it.
            del buf[:self._pos]
            self._pos = 0
        return out

    def _scan(self) -> int | None:
        """The end offset of the value in progress once it is complete, else None."""
        buf = self._buf
        n = len(buf)
        pos = self._pos
        while pos < n:
            if self._start < 0:
                m = _NOT_WS.search(buf, pos)
                if m is None:
                    self._pos = n
                    return None
                pos = m.start()
                c = buf[pos]
                if c not in b"{[":
                    raise FramingError("expected a JSON object or array, got "
                                       f"{bytes(buf[pos:pos + 20])!r}")
                self._start = pos
                self._depth = 1
                pos += 1
                continue
            if self._in_string:
                m = _IN_STRING.search(buf, pos)
                if m is None:
                    pos = n
                    break
                pos = m.start()
                if buf[pos] == 0x5C:  # backslash: the next byte is escaped
                    if pos + 1 >= n:
                        break  # wait for the escaped byte
                    pos += 2
                    continue
                self._in_string = False
                pos += 1
                continue
            m = _STRUCT.search(buf, pos)
            if m is None:
                pos = n
                break
            pos = m.start()
            c = buf[pos]
            pos += 1
            if c == 0x22:
                self._in_string = True
            elif c in b"{[":
                self._depth += 1
                if self._depth > MAX_DEPTH:
                    raise FramingError(f"JSON nested deeper than {MAX_DEPTH} levels")
            else:
                self._depth -= 1
                if self._depth == 0:
                    self._pos = pos
                    return pos
        self._pos = pos
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: bytes) -> Any:
    try:
        return json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise FramingError(f"a message is not valid UTF-8 ({e.reason} at byte "
                           f"{e.start})") from None
    except RecursionError:
        raise FramingError("a message is nested too deeply") from None
    except ValueError as e:
        raise FramingError(f"a message is not valid JSON: {e}") from None


def encode(msg: Any) -> bytes:
    # ASCII with \u escapes: a string a client sent may hold lone surrogates,
    # which have no UTF-8 form but must still echo back.
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


# -- messages -----------------------------------------------------------------------------

@dataclass
class Message:
    """One JSON-RPC 1.0 message: a request (``id`` not None), a notification,
    or a reply (``result`` or ``error``) to one of ours."""

    kind: str  # "request", "notify", "reply", "error"
    id: Any = None
    method: str | None = None
    params: list | None = None
    result: Any = None
    error: Any = None


class BadMessage(Exception):
    """A JSON value that is not a JSON-RPC message; ``id`` is set when one was found."""

    def __init__(self, message: str, id: Any = None):
        super().__init__(message)
        self.id = id


def parse_message(j: Any) -> Message:
    if not isinstance(j, dict):
        raise BadMessage("a JSON-RPC message is a JSON object, not "
                         f"{type(j).__name__ if not isinstance(j, list) else 'an array'}")
    msg_id = j.get("id")
    if "method" in j:
        method, params = j["method"], j.get("params")
        unknown = set(j) - {"method", "params", "id"}
        if not isinstance(method, str):
            raise BadMessage("\"method\" must be a string", msg_id)
        if not isinstance(params, list):
            raise BadMessage("\"params\" must be an array", msg_id)
        if unknown:
            raise BadMessage(f"unexpected member(s) {sorted(unknown)} in a request", msg_id)
        return Message("notify" if msg_id is None else "request", msg_id, method, params)
    if "result" in j or "error" in j:
        if j.get("error") is not None:
            return Message("error", msg_id, error=j["error"])
        return Message("reply", msg_id, result=j.get("result"))
    raise BadMessage("a JSON-RPC message needs \"method\", \"result\" or \"error\"", msg_id)


def request(method: str, params: list, msg_id: Any) -> dict:
    return {"method": method, "params": params, "id": msg_id}


def notify(method: str, params: list) -> dict:
    return {"method": method, "params": params, "id": None}


def reply(msg_id: Any, result: Any) -> dict:
    return {"result": result, "error": None, "id": msg_id}


def error(msg_id: Any, err: Any) -> dict:
    return {"result": None, "error": err, "id": msg_id}
