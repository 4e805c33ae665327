"""Linux capabilities of this process, read from /proc/self/status, for error messages that say what
is missing and where it went (the unit's AmbientCapabilities, or a bounding set above it)."""

from __future__ import annotations

CAPS = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}


def capability_sets(status: str | None = None) -> dict[str, int]:
    """CapInh, CapPrm, CapEff, CapBnd, CapAmb as integers."""
    if status is None:
        with open("/proc/self/status") as f:
            status = f.read()
    out = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key.startswith("Cap"):
            out[key] = int(value.strip(), 16)
    return out


def capability_report(name: str, status: str | None = None) -> str:
    """Whether this process has capability `name`, and if not, where it is missing."""
    bit = 1 << CAPS[name]
    sets = capability_sets(status)
    if sets.get("CapEff", 0) & bit:
        return f"{name} is in effect"
    if not sets.get("CapBnd", 0) & bit:
        return (f"{name} is not even in this process's bounding set (CapBnd={sets.get('CapBnd', 0):016x}): "
                "the host or container above the unit withholds it (systemd-nspawn: --capability="
                f"{name})")
    return (f"{name} is allowed (bounding set) but not in effect (CapEff={sets.get('CapEff', 0):016x}): "
            f"the unit must grant it (AmbientCapabilities={name})")
