"""JSON-RPC 2.0 over a unix socket: one JSON value per line, each way.

A request line holds one request object or a batch (an array of them); each
reply is one line.  Methods are plain callables, sync or async, registered by
name; params (an object for keyword arguments or an array for positional
ones) are checked against the callable's signature before the call, so a
wrong call gets -32602 naming the parameter instead of a traceback.

A method reports an error the caller should see by raising :class:`RpcError`
with one of the application codes below (or any code in -32000..-32099);
exception types passed in ``error_codes`` are mapped the same way.  Anything
else it raises is a bug: it is logged with its traceback and the caller gets
-32603; the server goes on.

:class:`Dispatcher` is the protocol without I/O (bytes in, bytes out);
:class:`RpcServer` puts it on a socket, one task per client, so a slow or
broken client stalls only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import stat
import tempfile
import types
import typing
import uuid
from collections import abc
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

# JSON-RPC 2.0's own codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# ovsd's application codes (JSON-RPC reserves -32000..-32099 for servers).
E_NOT_FOUND = -32001  # the bridge, port, record, flow... named does not exist
E_EXISTS = -32002  # it already exists
E_INVALID = -32003  # the request is well-formed but its content is wrong
E_BUSY = -32004  # cannot be done now (try again later)
E_FAILED = -32005  # the switch tried and failed (e.g. a device would not open)

DEFAULT_MAX_LINE = 16 << 20
_READ_CHUNK = 1 << 16


class RpcError(Exception):
    """An error to send to the caller as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _to_json_default(obj: Any) -> Any:
    # Results may hold the database's values: make them JSON without fuss.
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=_to_json_default).encode()


_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "an array", dict: "an object", type(None): "null"}


def _type_name(value: Any) -> str:
    for t, name in _JSON_TYPES.items():
        if type(value) is t:
            return name
    return type(value).__name__


def _accepted_types(hint: Any) -> tuple[type, ...] | None:
    """The JSON types a parameter annotation admits, or None to accept anything."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        out: list[type] = []
        for arg in typing.get_args(hint):
            acc = _accepted_types(arg)
            if acc is None:
                return None
            out.extend(acc)
        return tuple(out)
    base = origin or hint
    if base is None or base is type(None):
        return (type(None),)
    if base in (list, tuple, abc.Sequence):
        return (list,)
    if base in (dict, abc.Mapping):
        return (dict,)
    if base is float:
        return (float, int)
    if base in (str, int, bool):
        return (base,)
    return None


class _Method:
    def __init__(self, name: str, fn: Callable):
        self.name = name
        self.fn = fn
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # unresolvable annotations: check names only
            hints = {}
        self.accepts = {n: _accepted_types(h) for n, h in hints.items() if n != "return"}

    def bind(self, params: Any) -> inspect.BoundArguments:
        try:
            if isinstance(params, list):
                bound = self.signature.bind(*params)
            else:
                bound = self.signature.bind(**params)
        except TypeError as e:
            raise RpcError(INVALID_PARAMS, f"invalid params for '{self.name}': {e}") from None
        for pname, value in bound.arguments.items():
            accepted = self.accepts.get(pname)
            if accepted is None:
                continue
            kind = self.signature.parameters[pname].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                items = [(f"{pname}[{i}]", v) for i, v in enumerate(value)]
            elif kind is inspect.Parameter.VAR_KEYWORD:
                items = list(value.items())
            else:
                items = [(pname, value)]
            for shown, v in items:
                if not any(type(v) is t or (t is float and type(v) is int) for t in accepted):
                    names = [_JSON_TYPES.get(t, t.__name__) for t in accepted
                             if not (t is int and float in accepted)]
                    raise RpcError(INVALID_PARAMS, f"invalid params for '{self.name}': "
                                                   f"'{shown}' must be {' or '.join(names)}, "
                                                   f"got {_type_name(v)}")
        return bound


class Dispatcher:
    """JSON-RPC 2.0 without I/O: a request line in, a reply line (or None) out."""

    def __init__(self, methods: Mapping[str, Callable], *,
                 error_codes: Mapping[type[BaseException], int] | None = None):
        self.methods = {name: _Method(name, fn) for name, fn in methods.items()}
        self.error_codes = dict(error_codes or {})

    async def handle_line(self, line: bytes) -> bytes | None:
        """The reply to one request line (without its newline), or None if none is due."""
        try:
            return await self._handle_line(line)
        except Exception:  # a bug here must cost one reply, not the connection
            log.exception("handling an RPC request failed")
            return encode(_error(None, INTERNAL_ERROR,
                                 "internal error while handling the request"))

    async def _handle_line(self, line: bytes) -> bytes | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            return encode(_error(None, PARSE_ERROR, f"parse error: the request is not "
                                                    f"valid UTF-8 ({e.reason} at byte "
                                                    f"{e.start})"))
        if not text.strip():
            return None
        try:
            message = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            return encode(_error(None, PARSE_ERROR, f"parse error: {e}"))
        if isinstance(message, list):
            if not message:
                return encode(_error(None, INVALID_REQUEST,
                                     "invalid request: an empty batch"))
            replies = [r for r in [await self.handle_request(m) for m in message]
                       if r is not None]
            if not replies:
                return None
            return b"[" + b",".join(self._encode_reply(r) for r in replies) + b"]"
        reply = await self.handle_request(message)
        return None if reply is None else self._encode_reply(reply)

    @staticmethod
    def _encode_reply(reply: dict) -> bytes:
        try:
            return encode(reply)
        except (TypeError, ValueError, RecursionError) as e:
            # Only a method's result can fail to encode: send an error in its place.
            log.error("cannot encode the result of RPC request %r as JSON: %s",
                      reply.get("id"), e)
            return encode(_error(reply.get("id"), INTERNAL_ERROR,
                                 f"internal error: the result cannot be sent as JSON ({e})"))

    async def handle_request(self, req: Any) -> dict | None:
        """The reply object to one request object, or None for a notification."""
        if not isinstance(req, dict):
            return _error(None, INVALID_REQUEST,
                          f"invalid request: expected an object, got {_type_name(req)}")
        req_id = req.get("id")
        id_ok = "id" in req and (req_id is None or (type(req_id) in (str, int, float)))
        reply_id = req_id if id_ok else None
        if req.get("jsonrpc") != "2.0":
            return _error(reply_id, INVALID_REQUEST,
                          'invalid request: "jsonrpc" must be "2.0"')
        if "id" in req and not id_ok:
            return _error(None, INVALID_REQUEST, "invalid request: \"id\" must be a string, "
                                                 "a number or null")
        method = req.get("method")
        if not isinstance(method, str):
            return _error(reply_id, INVALID_REQUEST,
                          'invalid request: "method" must be a string')
        params = req.get("params", {})
        if not isinstance(params, (dict, list)):
            return _error(reply_id, INVALID_REQUEST,
                          'invalid request: "params" must be an object or an array')
        notification = "id" not in req
        try:
            result = await self.call(method, params)
        except RpcError as e:
            if notification:
                log.info("notification %r failed: %s", method, e.message)
                return None
            return {"jsonrpc": "2.0", "id": req_id, "error": e.to_json()}
        if notification:
            return None
        return {"jsonrpc": "2.0", "id": req_id, "result": result}

    async def call(self, method: str, params: dict | list) -> Any:
        """Call a method; every failure comes out as an RpcError."""
        m = self.methods.get(method)
        if m is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: '{method}'")
        bound = m.bind(params)
        try:
            result = m.fn(*bound.args, **bound.kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        except RpcError:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            for etype, code in self.error_codes.items():
                if isinstance(e, etype):
                    raise RpcError(code, str(e)) from None
            log.exception("RPC method %r failed", method)
            raise RpcError(INTERNAL_ERROR, f"internal error in '{method}': "
                                           f"{type(e).__name__}: {e}") from None


def _error(req_id: Any, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}


class RpcServer:
    """A JSON-RPC 2.0 server on a unix socket (asyncio)."""

    def __init__(self, methods: Mapping[str, Callable], path: str | os.PathLike,
                 mode: int = 0o660, max_line: int = DEFAULT_MAX_LINE, *,
                 error_codes: Mapping[type[BaseException], int] | None = None):
        self.dispatcher = Dispatcher(methods, error_codes=error_codes)
        self.path = os.fspath(path)
        self.mode = mode
        self.max_line = max_line
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task] = set()
        self._inode: tuple[int, int] | None = None

    async def start(self) -> None:
        sock = self._bind()
        self._server = await asyncio.start_unix_server(self._on_client, sock=sock)

    def _bind(self) -> socket.socket:
        self._remove_stale_socket()
        directory = os.path.dirname(os.path.abspath(self.path))
        # Bind in a private directory and move the socket into place, so it is
        # never reachable with the wrong permissions.
        private = tempfile.mkdtemp(prefix=".rpc-", dir=directory)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp_path = os.path.join(private, "sock")
        try:
            sock.bind(tmp_path)
            os.chmod(tmp_path, self.mode)
            os.rename(tmp_path, self.path)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)  # still there only if the rename failed
            with contextlib.suppress(OSError):
                os.rmdir(private)
        return sock

    def _remove_stale_socket(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.path)  # left behind by a server that is gone
            return
        finally:
            probe.close()
        raise OSError(f"another server is listening on {self.path}")

    async def close(self) -> None:
        """Stop listening, drop the clients and remove the socket file."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._inode is not None:
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._inode = None

    async def __aenter__(self) -> RpcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("RPC connection failed")
        finally:
            self._clients.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass
            except Exception:
                log.debug("closing an RPC connection failed", exc_info=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        scanned = 0  # bytes of buf known to hold no newline
        while True:
            chunk = await reader.read(_READ_CHUNK)
            if not chunk:
                return  # EOF; a request cut off mid-line is dropped with its client
            buf += chunk
            while True:
                nl = buf.find(b"\n", scanned)
                if nl < 0:
                    scanned = len(buf)
                    break
                if nl > self.max_line:
                    await self._too_long(writer)
                    return
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                scanned = 0
                reply = await self.dispatcher.handle_line(line.rstrip(b"\r"))
                if reply is not None:
                    writer.write(reply + b"\n")
                    await writer.drain()
            if len(buf) > self.max_line:
                await self._too_long(writer)
                return

    async def _too_long(self, writer: asyncio.StreamWriter) -> None:
        log.warning("RPC client sent a line longer than %d bytes; closing it", self.max_line)
        writer.write(encode(_error(None, INVALID_REQUEST,
                                   f"invalid request: line longer than {self.max_line} "
                                   "bytes; closing the connection")) + b"\n")
        # A client that sends too much may not read either: do not wait for it long.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(writer.drain(), 5)
