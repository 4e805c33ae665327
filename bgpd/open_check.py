"""A peer's OPEN checked against what the session is configured with (RFC 4271 6.2, RFC 5492).

The codec has already done the checks that need no configuration (version, lengths, well-formed
capabilities: `proto.bgp.open_rules`); these are the ones that do: the peer's AS, an acceptable
hold time, its BGP identifier, optional parameters, and the capabilities the session requires. The
session (`bgpd.session`) answers a failed check with the NOTIFICATION the returned error carries.
"""

from __future__ import annotations

from bgpd.session_config import MIN_HOLD_TIME, SessionConfig
from proto.bgp import (
    AddPathCap,
    CapCode,
    EnhancedRouteRefreshCap,
    ErrorCode,
    ExtendedMessageCap,
    FourOctetAsCap,
    GracefulRestartCap,
    MessageError,
    MultiprotocolCap,
    Open,
    OpenError,
    RouteRefreshCap,
)
from proto.bgp.capabilities import encode_capability

# Which capability class stands for a capability code in `SessionConfig.required_capabilities`.
_CAPABILITY_KIND: dict[int, type] = {
    CapCode.MULTIPROTOCOL: MultiprotocolCap,
    CapCode.ROUTE_REFRESH: RouteRefreshCap,
    CapCode.EXTENDED_MESSAGE: ExtendedMessageCap,
    CapCode.GRACEFUL_RESTART: GracefulRestartCap,
    CapCode.FOUR_OCTET_AS: FourOctetAsCap,
    CapCode.ADD_PATH: AddPathCap,
    CapCode.ENHANCED_ROUTE_REFRESH: EnhancedRouteRefreshCap,
}


def _has_capability(open_: Open, code: int) -> bool:
    kind = _CAPABILITY_KIND.get(code)
    return any(
        (kind is not None and isinstance(cap, kind)) or getattr(cap, "code", None) == code
        for cap in open_.capabilities
    )


def check_open(cfg: SessionConfig, local_open: Open, remote: Open) -> MessageError | None:
    """The checks against configuration (the codec already did the ones that need none)."""
    remote_as = remote.real_asn if cfg.four_octet_as else remote.asn
    if remote_as != cfg.peer_as:
        return MessageError(
            ErrorCode.OPEN_MESSAGE,
            OpenError.BAD_PEER_AS,
            reason=f"peer AS {remote_as}, expected {cfg.peer_as}",
        )
    if remote.hold_time != 0 and remote.hold_time < max(cfg.min_hold_time, MIN_HOLD_TIME):
        return MessageError(
            ErrorCode.OPEN_MESSAGE,
            OpenError.UNACCEPTABLE_HOLD_TIME,
            reason=f"hold time {remote.hold_time}",
        )
    if remote.router_id == "0.0.0.0" or (cfg.ibgp and remote.router_id == cfg.router_id):
        return MessageError(
            ErrorCode.OPEN_MESSAGE,
            OpenError.BAD_BGP_IDENTIFIER,
            reason=f"BGP identifier {remote.router_id}",
        )
    if remote.other_parameters:
        return MessageError(
            ErrorCode.OPEN_MESSAGE,
            OpenError.UNSUPPORTED_OPTIONAL_PARAMETER,
            reason=f"optional parameter type {remote.other_parameters[0].type}",
        )
    missing = [code for code in sorted(cfg.required_capabilities) if not _has_capability(remote, code)]
    if missing:
        data = b"".join(_required_capability_bytes(local_open, code) for code in missing)
        return MessageError(
            ErrorCode.OPEN_MESSAGE,
            OpenError.UNSUPPORTED_CAPABILITY,
            data,
            reason=f"peer lacks required capabilities {missing}",
        )
    return None


def _required_capability_bytes(local_open: Open, code: int) -> bytes:
    """RFC 5492 section 3: the data names the capabilities we wanted, as we advertise them."""
    kind = _CAPABILITY_KIND.get(code)
    ours = local_open.capability(kind) if kind is not None else None
    if ours is not None:
        return encode_capability(ours)  # type: ignore[arg-type]
    return bytes((code, 0))
