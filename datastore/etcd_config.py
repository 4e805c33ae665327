"""How to reach etcd: endpoints, TLS files, credentials. Kept apart from the client so that choosing a
datastore (`datastore.apiconfig`) does not load the HTTP client into daemons that use the cluster file."""

from __future__ import annotations

from dataclasses import field

from proto.record import record


@record(frozen=True, slots=True)
class ClientConfig:
    endpoints: tuple[str, ...]
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 3.0
    # how long to keep trying all endpoints while none can serve (a leader election after a member
    # dies answers "leader changed" for a moment); requests that may have been applied are never retried
    retry_for: float = 5.0
    extra_headers: dict[str, str] = field(default_factory=dict)
