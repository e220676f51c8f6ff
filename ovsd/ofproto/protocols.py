"""OpenFlow versions and flow formats, as ovs-ofctl negotiates them.

``ovs-ofctl`` without ``-O`` talks OpenFlow 1.0 and sends a flow either as
a plain OpenFlow 1.0 match or, when that cannot express it, as NXM; with
``-O OpenFlow13`` it must use OXM in OpenFlow 1.3.  Every field and action
narrows the set of usable formats (the ``P_*`` bits below, also exported
by :mod:`ovsd.ofproto.fields`); when nothing
allowed is left ovs-ofctl refuses the flow with the message produced by
:func:`choose_protocol`.
"""

from __future__ import annotations

from ovsd.ofproto.values import FlowSyntaxError

# Bit sets of the OpenFlow flow formats that can carry something (OVS's
# enum ofputil_protocol, without the table-id variants).
P_OF10 = 1 << 0
P_NXM = 1 << 1
P_OF11 = 1 << 2
P_OF12 = 1 << 3
P_OF13 = 1 << 4
P_OF14 = 1 << 5
P_OF15 = 1 << 6
P_OXM = P_OF12 | P_OF13 | P_OF14 | P_OF15
P_ANY = P_OF10 | P_NXM | P_OF11 | P_OXM
P_NXM_OXM = P_NXM | P_OXM
P_NXM_OF11_UP = P_NXM | P_OF11 | P_OXM
P_OF11_UP = P_OF11 | P_OXM
P_OF12_UP = P_OXM
P_OF13_UP = P_OF13 | P_OF14 | P_OF15
P_OF10_ANY = P_OF10 | P_NXM

VERSIONS = {"OpenFlow10": 1, "OpenFlow11": 2, "OpenFlow12": 3, "OpenFlow13": 4,
            "OpenFlow14": 5, "OpenFlow15": 6}
_ALIASES = {"OpenFlow1.0": 1, "OpenFlow1.1": 2, "OpenFlow1.2": 3, "OpenFlow1.3": 4,
            "OpenFlow1.4": 5, "OpenFlow1.5": 6}
_ALLOWED = {1: P_OF10 | P_NXM, 2: P_OF11, 3: P_OF12, 4: P_OF13,
            5: P_OF14, 6: P_OF15}
_BIT_NAMES = [(P_OF10, "OpenFlow10"), (P_NXM, "NXM"), (P_OF11, "OpenFlow11"),
              (P_OF12, "OXM-OpenFlow12"), (P_OF13, "OXM-OpenFlow13"),
              (P_OF14, "OXM-OpenFlow14"), (P_OF15, "OXM-OpenFlow15")]
_ABBREVS = [(P_ANY, "any"), (P_OF10, "OpenFlow10"), (P_NXM, "NXM"), (P_OXM, "OXM")]


def version_number(version: str | int | None) -> int:
    """1..6 (the wire version) for "OpenFlow10".."OpenFlow15"; None means
    OpenFlow 1.0, as ovs-ofctl without ``-O``."""
    if version is None:
        return 1
    if isinstance(version, int):
        if 1 <= version <= 6:
            return version
    else:
        n = VERSIONS.get(version) or _ALIASES.get(version)
        if n:
            return n
    raise FlowSyntaxError(f"unknown OpenFlow version {version!r} (expected one of "
                          f"{', '.join(VERSIONS)})")


def version_name(version: str | int | None) -> str:
    n = version_number(version)
    return next(name for name, v in VERSIONS.items() if v == n)


def allowed_protocols(version: str | int | None) -> int:
    return _ALLOWED[version_number(version)]


def protocols_to_string(bits: int) -> str:
    """OVS's ofputil_protocols_to_string: ``OpenFlow10,NXM``, ``OXM``, ..."""
    if not bits:
        return "none"
    names = []
    while bits:
        for abbrev, name in _ABBREVS:
            if bits & abbrev == abbrev:
                names.append(name)
                bits &= ~abbrev
                break
        else:
            for bit, name in _BIT_NAMES:
                if bits & bit:
                    names.append(name)
                    bits &= ~bit
                    break
    return ",".join(names)


def choose_protocol(version: str | int | None, usable: int) -> int:
    """The flow format ovs-ofctl would send with (one P_* bit), or
    FlowSyntaxError when no allowed format can carry the flow."""
    allowed = allowed_protocols(version)
    if not usable & allowed:
        raise FlowSyntaxError(
            f"none of the usable flow formats ({protocols_to_string(usable)}) is among "
            f"the allowed flow formats ({protocols_to_string(allowed)})")
    if usable & P_OF10 & allowed:
        return P_OF10
    return usable & allowed & -(usable & allowed)


def protocol_version(protocol: int) -> int:
    """The OpenFlow wire version (1..6) a flow format belongs to."""
    return {P_OF10: 1, P_NXM: 1, P_OF11: 2, P_OF12: 3, P_OF13: 4,
            P_OF14: 5, P_OF15: 6}[protocol]
