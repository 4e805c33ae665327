"""The lab's topology as an inline SVG picture: the gateway, one bar per subnet (the one with the
cloud source/destination check marked), the hosts on their subnets with their addresses and blocks,
and the pods under their hosts. Pure text out; no fonts or images fetched."""

from __future__ import annotations

from html import escape

from lab.topology import Scenario

SLOT = 210  # width per host
HOST_W, HOST_H = 190, 90
POD_W, POD_H = 164, 52
TOP = 20
GW_Y = TOP + 8
BAR_Y = GW_Y + 140
HOST_Y = BAR_Y + 34
POD_Y = HOST_Y + HOST_H + 38
HEIGHT = POD_Y + POD_H + 24

COLOURS = {"gw": "#fbe9c6", "host": "#dde8f7", "pod": "#e3f3e0", "ext": "#eeeeee", "check": "#c0392b",
           "line": "#444", "bar": "#4a6fa5"}


def _text(x: float, y: float, s: str, size: int = 12, weight: str = "normal", anchor: str = "middle",
          fill: str = "#111") -> str:
    # A white halo keeps a label readable where a line crosses it.
    return (f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" font-weight="{weight}" text-anchor="{anchor}" '
            f'fill="{fill}" stroke="#fff" stroke-width="3" paint-order="stroke" '
            f'font-family="DejaVu Sans, Arial, sans-serif">{escape(s)}</text>')


def _box(x: float, y: float, w: float, h: float, fill: str, cls: str = "", stroke: str = "#333") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<rect{c} x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="7" fill="{fill}" stroke="{stroke}"/>'


def topology_svg(scenario: Scenario, blocks: dict[str, list[str]] | None = None) -> str:
    """`blocks`: node name -> its pod blocks (shown in the host's box)."""
    blocks = blocks or {}
    subnets = list(scenario.subnets)
    members: dict[str, list[tuple[str, str, str]]] = {s.name: [] for s in subnets}  # name, ip4, ip6
    for h in scenario.hosts:
        members[h.subnet].append((h.name, h.ip, h.ip6))
    for e in scenario.externals:
        members[e.subnet].append((e.name, e.address.split("/")[0], ""))
    slots = [max(1, len(members[s.name])) for s in subnets]
    width = sum(slots) * SLOT + 40
    gw_x = width / 2
    parts = [f'<svg class="topology" viewBox="0 0 {width} {HEIGHT}" '
             f'width="{width}" height="{HEIGHT}" role="img" aria-label="lab topology">']
    # the gateway: the fabric namespace routing between the subnets
    gw_w, gw_h = 330, 76
    parts.append(_box(gw_x - gw_w / 2, GW_Y, gw_w, gw_h, COLOURS["gw"], "gateway"))
    parts.append(_text(gw_x, GW_Y + 20, "gateway (the fabric)", 13, "bold"))
    parts.append(_text(gw_x, GW_Y + 37, " | ".join(s.gateway for s in subnets), 11))
    v6 = [s.gateway6 for s in subnets if s.gateway6]
    if v6:
        parts.append(_text(gw_x, GW_Y + 51, " | ".join(v6), 11))
    parts.append(_text(gw_x, GW_Y + gw_h - 9, "routes host subnets only: no pod addresses", 11, fill="#7a4b00"))
    x0 = 20.0
    for sn, n in zip(subnets, slots):
        w = n * SLOT
        cx = x0 + w / 2
        parts.append(f'<line x1="{gw_x:.0f}" y1="{GW_Y + gw_h}" x2="{cx:.0f}" y2="{BAR_Y}" '
                     f'stroke="{COLOURS["line"]}" stroke-width="2"/>')
        bar_colour = COLOURS["check"] if sn.srcdst_check else COLOURS["bar"]
        parts.append(f'<rect class="subnet" x="{x0 + 6:.0f}" y="{BAR_Y}" width="{w - 12:.0f}" height="8" '
                     f'fill="{bar_colour}"/>')
        parts.append(_text(x0 + 10, BAR_Y - 8, sn.cidr6 or sn.cidr, 12, "bold", "start"))
        if sn.cidr6:
            parts.append(_text(x0 + 10, BAR_Y - 23, sn.cidr, 12, "bold", "start"))
        if sn.srcdst_check:
            parts.append(_text(x0 + 10, BAR_Y - 40, "cloud source/destination check (AWS style)", 11, "bold",
                               "start", COLOURS["check"]))
        for i, (name, ip4, ip6) in enumerate(members[sn.name]):
            hx = x0 + i * SLOT + (SLOT - HOST_W) / 2
            is_ext = any(e.name == name for e in scenario.externals)
            parts.append(f'<line x1="{hx + HOST_W / 2:.0f}" y1="{BAR_Y + 8}" x2="{hx + HOST_W / 2:.0f}" '
                         f'y2="{HOST_Y}" stroke="{COLOURS["line"]}"/>')
            parts.append(_box(hx, HOST_Y, HOST_W, HOST_H, COLOURS["ext" if is_ext else "host"],
                              "external" if is_ext else "host"))
            parts.append(_text(hx + HOST_W / 2, HOST_Y + 17, name, 13, "bold"))
            parts.append(_text(hx + HOST_W / 2, HOST_Y + 33, ip4, 11))
            if ip6:
                parts.append(_text(hx + HOST_W / 2, HOST_Y + 47, ip6, 11))
            for j, b in enumerate(blocks.get(name, [])[:2]):
                parts.append(_text(hx + HOST_W / 2, HOST_Y + 61 + j * 13, f"block {b}", 10, fill="#355"))
            for pod in (p for p in scenario.pods if p.host == name):
                px = hx + (HOST_W - POD_W) / 2
                parts.append(f'<line x1="{px + POD_W / 2:.0f}" y1="{HOST_Y + HOST_H}" x2="{px + POD_W / 2:.0f}" '
                             f'y2="{POD_Y}" stroke="{COLOURS["line"]}" stroke-dasharray="4 3"/>')
                parts.append(_box(px, POD_Y, POD_W, POD_H, COLOURS["pod"], "pod"))
                parts.append(_text(px + POD_W / 2, POD_Y + 16, f"{pod.name} ({pod.host_iface})", 11, "bold"))
                parts.append(_text(px + POD_W / 2, POD_Y + 31, pod.ip, 11))
                if pod.ip6:
                    parts.append(_text(px + POD_W / 2, POD_Y + 45, pod.ip6, 11))
        x0 += w
    parts.append("</svg>")
    return "\n".join(parts)
