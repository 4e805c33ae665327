"""An etcd v3 client over etcd's own gRPC gateway (JSON over HTTP, `/v3/...`), with httpx.

Why the gateway and not a gRPC client library: the daemons need a blocking client (tortiectl, `load()`)
and a watch that runs on a thread beside an asyncio loop, with failover across the cluster's members
decided by us. httpx gives both sync calls and streamed responses, TLS with client certificates, and
needs no generated protobuf code; etcd 3.4 serves the gateway on every client URL. The asyncio gRPC
clients (aetcd, etcetra) talk to one endpoint at a time and would force an event loop into tortiectl.

Every method sends one request to the current endpoint; a connection that cannot be made moves to the
next endpoint and tries again (all of them once). A request that was sent and got no answer is not
repeated (a transaction may have been applied): it raises `EtcdUnavailable`.

Byte strings (keys, values) travel base64-encoded, int64s as JSON strings: the gateway's encoding of
etcd's protobuf messages (`etcdserverpb`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from datastore.etcd_config import ClientConfig
from proto.record import record

# httpx logs every request at INFO; a watch reconnecting with backoff would flood the daemons' logs
logging.getLogger("httpx").setLevel(logging.WARNING)


class EtcdError(OSError):
    """etcd could not do what was asked; the message names the endpoint."""


class EtcdUnavailable(EtcdError):
    """No endpoint answered (refused, unreachable, timed out, no leader)."""


class EtcdAuthError(EtcdError):
    """The user name or password was refused, or the client certificate was not accepted."""


class EtcdTLSError(EtcdError):
    """A certificate or key file is missing or bad, or the server's certificate failed verification."""


class _AllFailed(Exception):
    """Every endpoint refused the connection or could not serve; safe to try again."""


class EtcdCompacted(EtcdError):
    """The revision asked for has been compacted away."""

    def __init__(self, message: str, compact_revision: int) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


@record(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    version: int = 0


@record(frozen=True, slots=True)
class WatchedEvent:
    type: str  # "PUT" or "DELETE"
    kv: KeyValue


@record(frozen=True, slots=True)
class WatchMessage:
    """One message of a watch stream."""

    revision: int
    events: tuple[WatchedEvent, ...] = ()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""


@record(frozen=True, slots=True)
class Compare:
    """A transaction guard: `target` is VERSION, MOD, CREATE or VALUE; result EQUAL, NOT_EQUAL, ..."""

    key: str
    target: str
    value: int | bytes
    result: str = "EQUAL"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": _b64(self.key), "target": self.target, "result": self.result}
        if self.target == "VERSION":
            out["version"] = str(self.value)
        elif self.target == "MOD":
            out["mod_revision"] = str(self.value)
        elif self.target == "CREATE":
            out["create_revision"] = str(self.value)
        else:
            out["value"] = _b64(self.value)  # type: ignore[arg-type]
        return out


@record(frozen=True, slots=True)
class Put:
    key: str
    value: bytes

    def to_json(self) -> dict[str, Any]:
        return {"request_put": {"key": _b64(self.key), "value": _b64(self.value)}}


@record(frozen=True, slots=True)
class Delete:
    key: str

    def to_json(self) -> dict[str, Any]:
        return {"request_delete_range": {"key": _b64(self.key)}}


@record(frozen=True, slots=True)
class Range:
    key: str
    prefix: bool = True

    def to_json(self) -> dict[str, Any]:
        req: dict[str, Any] = {"key": _b64(self.key)}
        if self.prefix:
            req["range_end"] = _b64(prefix_end(self.key))
        return {"request_range": req}


@record(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    ranges: tuple[tuple[KeyValue, ...], ...] = ()  # the KVs of each Range op, in order


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str | bytes) -> bytes:
    """The range end that makes [prefix, end) cover every key starting with `prefix` (etcd's rule)."""
    raw = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def _kv(data: dict[str, Any]) -> KeyValue:
    return KeyValue(_unb64(data.get("key")).decode("utf-8", "replace"), _unb64(data.get("value")),
                    int(data.get("mod_revision", 0)), int(data.get("create_revision", 0)),
                    int(data.get("version", 0)))


def _ssl_context(cfg: ClientConfig) -> ssl.SSLContext | bool:
    if not any(e.startswith("https://") for e in cfg.endpoints):
        return True
    for what, path in (("CA certificate", cfg.ca_file), ("client certificate", cfg.cert_file),
                       ("client key", cfg.key_file)):
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise EtcdTLSError(f"etcd {what} file {path}: {exc.strerror}") from None
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else ssl.create_default_context()
    except ssl.SSLError as exc:
        raise EtcdTLSError(f"etcd CA certificate file {cfg.ca_file} is not a PEM certificate: {exc}") from None
    if cfg.cert_file or cfg.key_file:
        if not (cfg.cert_file and cfg.key_file):
            raise EtcdTLSError("etcd client TLS needs both a certificate file and a key file")
        try:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        except ssl.SSLError as exc:
            raise EtcdTLSError(f"etcd client certificate {cfg.cert_file} / key {cfg.key_file}: {exc}") from None
    return ctx


def _describe(exc: BaseException) -> str:
    """The root cause of a transport error, short (`connection refused`, `certificate verify failed`)."""
    seen: BaseException | None = exc
    text = str(exc)
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"TLS: certificate verify failed: the server's certificate is not trusted ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            reason = (seen.reason or str(seen)).lower().replace("_", " ")
            if "alert" in reason:
                return f"TLS: the server refused the client certificate ({reason})"
            return f"TLS: {reason}"
        if isinstance(seen, OSError) and seen.strerror:
            text = seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return text or type(exc).__name__


class EtcdClient:
    """A blocking client; thread-safe (httpx clients are). `close()` when done."""

    def __init__(self, config: ClientConfig) -> None:
        if not config.endpoints:
            raise EtcdError("no etcd endpoints configured")
        self.config = config
        self._verify = _ssl_context(config)
        self._http = self._new_http(config.timeout)
        self._lock = threading.Lock()
        self._current = 0
        self._token: str | None = None
        # each watch stream's client and, once connected, its socket: closing a socket does not wake
        # a thread blocked reading it, shutting it down does
        self._streams: dict[httpx.Client, socket.socket | None] = {}

    def _new_http(self, timeout: float | None) -> httpx.Client:
        return httpx.Client(verify=self._verify, timeout=httpx.Timeout(self.config.timeout, read=timeout),
                            headers=self.config.extra_headers)

    @property
    def endpoint(self) -> str:
        return self.config.endpoints[self._current]

    def close(self) -> None:
        self.abort_watches()
        self._http.close()

    def abort_watches(self) -> None:
        """End every watch stream of this client (their iterators raise EtcdUnavailable or return)."""
        with self._lock:
            streams = list(self._streams.items())
        for http, sock in streams:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            http.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    def _authenticate(self, http: httpx.Client, endpoint: str) -> None:
        if not self.config.username:
            return
        resp = http.post(f"{endpoint}/v3/auth/authenticate",
                         json={"name": self.config.username, "password": self.config.password or ""})
        if resp.status_code != 200:
            raise EtcdAuthError(f"etcd {endpoint} refused user {self.config.username!r}: "
                                f"{_error_text(resp)}")
        self._token = resp.json().get("token")

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the current endpoint, moving on to the next one when it cannot be reached, and round
        the endpoints again (with a short backoff) for `retry_for` seconds while none can serve."""
        deadline = time.monotonic() + self.config.retry_for
        delay = 0.05
        while True:
            try:
                return self._call_once(path, body)
            except _AllFailed as exc:
                if time.monotonic() + delay > deadline:
                    raise EtcdUnavailable(str(exc)) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _call_once(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        n = len(self.config.endpoints)
        errors: list[str] = []
        start = self._current
        for i in range(n):
            index = (start + i) % n
            endpoint = self.config.endpoints[index]
            try:
                if self.config.username and self._token is None:
                    self._authenticate(self._http, endpoint)
                resp = self._http.post(f"{endpoint}{path}", json=body, headers=self._headers())
                if resp.status_code != 200 and _is_token_error(resp) and self.config.username:
                    self._token = None  # expired (etcd's simple tokens live 5 minutes by default)
                    self._authenticate(self._http, endpoint)
                    resp = self._http.post(f"{endpoint}{path}", json=body, headers=self._headers())
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if _is_tls_failure(exc):
                    raise EtcdTLSError(f"etcd {endpoint}: {_describe(exc)}") from None
                errors.append(f"{endpoint}: {_describe(exc)}")
                continue
            except httpx.TransportError as exc:
                # sent but unanswered: it may have been applied, so never resent elsewhere
                raise EtcdUnavailable(f"etcd {endpoint}: {_describe(exc) or 'timed out'}") from None
            self._current = index
            if resp.status_code == 200:
                return resp.json()
            code = _error_code(resp)
            if code in (14, 4):  # UNAVAILABLE (no leader, stopping), DEADLINE_EXCEEDED
                errors.append(f"{endpoint}: {_error_text(resp)}")
                continue
            if code in (16, 7):  # UNAUTHENTICATED, PERMISSION_DENIED
                raise EtcdAuthError(f"etcd {endpoint}: {_error_text(resp)}")
            if code == 11 and "compacted" in _error_text(resp):
                raise EtcdCompacted(f"etcd {endpoint}: {_error_text(resp)}", 0)
            raise EtcdError(f"etcd {endpoint}: {_error_text(resp)}")
        raise _AllFailed("etcd unreachable: " + "; ".join(errors))

    # ------------------------------------------------------------------ KV

    def status(self) -> dict[str, Any]:
        return self._call("/v3/maintenance/status", {})

    def get_prefix(self, prefix: str, *, revision: int = 0) -> tuple[int, list[KeyValue]]:
        body: dict[str, Any] = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        if revision:
            body["revision"] = str(revision)
        out = self._call("/v3/kv/range", body)
        return int(out["header"]["revision"]), [_kv(kv) for kv in out.get("kvs", ())]

    def get(self, key: str) -> KeyValue | None:
        out = self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = out.get("kvs", ())
        return _kv(kvs[0]) if kvs else None

    def count(self, prefix: str) -> tuple[int, int]:
        """(revision, number of keys under prefix): a cheap linearizable read, used as a health probe."""
        out = self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                          "count_only": True})
        return int(out["header"]["revision"]), int(out.get("count", 0))

    def put(self, key: str, value: bytes) -> int:
        return int(self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})["header"]["revision"])

    def delete_prefix(self, prefix: str) -> int:
        out = self._call("/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        return int(out.get("deleted", 0))

    def compact(self, revision: int) -> None:
        self._call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def txn(self, compare: Sequence[Compare], success: Sequence[Put | Delete | Range],
            failure: Sequence[Put | Delete | Range] = ()) -> TxnResult:
        out = self._call("/v3/kv/txn", {"compare": [c.to_json() for c in compare],
                                        "success": [op.to_json() for op in success],
                                        "failure": [op.to_json() for op in failure]})
        ranges = tuple(tuple(_kv(kv) for kv in r["response_range"].get("kvs", ()))
                       for r in out.get("responses", ()) if "response_range" in r)
        return TxnResult(bool(out.get("succeeded", False)), int(out["header"]["revision"]), ranges)

    # ------------------------------------------------------------------ watch

    def watch(self, key: str, range_end: bytes, start_revision: int,
              stop: threading.Event | None = None) -> Iterator[WatchMessage]:
        """Stream watch messages for [key, range_end) from `start_revision`; ends when the stream does.

        Runs on its own HTTP connection (a long-lived response). Raises EtcdUnavailable when no endpoint
        takes the watch, EtcdCompacted when `start_revision` is gone.
        """
        body = {"create_request": {"key": _b64(key), "range_end": _b64(range_end),
                                   "start_revision": str(start_revision), "progress_notify": True}}
        n = len(self.config.endpoints)
        errors: list[str] = []
        for i in range(n):
            index = (self._current + i) % n
            endpoint = self.config.endpoints[index]
            http = self._new_http(None)  # no read timeout: the stream idles between changes
            with self._lock:
                self._streams[http] = None
            try:
                try:
                    if self.config.username and self._token is None:
                        self._authenticate(http, endpoint)
                    # without a leader a member would keep the watch open and silent: ask it to cancel
                    headers = {**self._headers(), "Grpc-Metadata-hasleader": "true"}
                    with http.stream("POST", f"{endpoint}/v3/watch", json=body, headers=headers) as resp:
                        if resp.status_code != 200:
                            resp.read()
                            if _is_token_error(resp):
                                self._token = None
                            raise EtcdError(f"etcd {endpoint}: watch refused: {_error_text(resp)}")
                        self._current = index
                        stream = resp.extensions.get("network_stream")
                        if stream is not None:
                            with self._lock:
                                if http in self._streams:
                                    self._streams[http] = stream.get_extra_info("socket")
                        for line in resp.iter_lines():
                            if stop is not None and stop.is_set():
                                return
                            if not line.strip():
                                continue
                            msg = _watch_message(json.loads(line))
                            if msg.compact_revision:
                                raise EtcdCompacted(f"etcd {endpoint}: revision {start_revision} is "
                                                    f"compacted (oldest is {msg.compact_revision})",
                                                    msg.compact_revision)
                            yield msg
                            if msg.canceled:
                                return
                        return
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    if _is_tls_failure(exc):
                        raise EtcdTLSError(f"etcd {endpoint}: {_describe(exc)}") from None
                    errors.append(f"{endpoint}: {_describe(exc)}")
                    continue
                except httpx.TransportError as exc:
                    raise EtcdUnavailable(f"etcd {endpoint}: watch broken: {_describe(exc)}") from None
            finally:
                with self._lock:
                    self._streams.pop(http, None)
                http.close()
        raise EtcdUnavailable("etcd unreachable: " + "; ".join(errors))


def _watch_message(data: dict[str, Any]) -> WatchMessage:
    if "error" in data:
        raise EtcdUnavailable(f"etcd watch error: {data['error'].get('message', data['error'])}")
    res = data.get("result", {})
    header = res.get("header", {})
    events = tuple(WatchedEvent(ev.get("type", "PUT"), _kv(ev.get("kv", {}))) for ev in res.get("events", ()))
    return WatchMessage(int(header.get("revision", 0)), events, bool(res.get("created", False)),
                        bool(res.get("canceled", False)), int(res.get("compact_revision", 0)),
                        res.get("cancel_reason", ""))


def _error_code(resp: httpx.Response) -> int | None:
    try:
        return int(resp.json().get("code"))
    except (ValueError, TypeError, AttributeError):
        return None


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        return str(data.get("message") or data.get("error") or resp.text).strip()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text.strip()[:200]}"


def _is_token_error(resp: httpx.Response) -> bool:
    return "invalid auth token" in _error_text(resp) or "user name is empty" in _error_text(resp)


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "CERTIFICATE" in str(exc).upper()
