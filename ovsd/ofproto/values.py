"""The value syntaxes of ovs-ofctl's flow language.

Shared by matches, actions and flow keywords: integers as OVS's
``parse_int_string``/``strtoull`` read them, Ethernet and IP addresses (and
their masks), OpenFlow port numbers and names, TCP flags, fragment types,
and the ``key=value`` tokenizer that splits a flow into its parts.  Every
function here is pure; failures raise :class:`FlowSyntaxError` with OVS's
wording, quoting the offending text.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Optional


class FlowSyntaxError(ValueError):
    """Text in ovs-ofctl flow syntax that cannot be accepted."""


PortResolver = Callable[[str], Optional[int]]
PortNamer = Callable[[int], Optional[str]]

# -- OpenFlow ports (16-bit OpenFlow 1.0 numbering, as OVS stores them) ------
OFPP_MAX = 0xFF00
OFPP_UNSET = 0xFFF7
OFPP_IN_PORT = 0xFFF8
OFPP_TABLE = 0xFFF9
OFPP_NORMAL = 0xFFFA
OFPP_FLOOD = 0xFFFB
OFPP_ALL = 0xFFFC
OFPP_CONTROLLER = 0xFFFD
OFPP_LOCAL = 0xFFFE
OFPP_NONE = 0xFFFF  # also spelled ANY
OFPP11_OFFSET = 0xFFFF0000

RESERVED_PORTS = {
    "IN_PORT": OFPP_IN_PORT, "TABLE": OFPP_TABLE, "NORMAL": OFPP_NORMAL,
    "FLOOD": OFPP_FLOOD, "ALL": OFPP_ALL, "CONTROLLER": OFPP_CONTROLLER,
    "LOCAL": OFPP_LOCAL, "ANY": OFPP_NONE, "UNSET": OFPP_UNSET,
}
_PORT_NAMES = {v: k for k, v in RESERVED_PORTS.items()}
_PORT_ALIASES = dict(RESERVED_PORTS, NONE=OFPP_NONE)


def parse_port(text: str, port_resolver: PortResolver | None = None) -> int | None:
    """An OpenFlow port number from a decimal number, a reserved name
    (``LOCAL``, ``in_port``, ...) or a port name; None if it is none of them.

    Like OVS, 32-bit OpenFlow 1.1 numbers of reserved ports (0xfffffffe)
    are folded into the 16-bit space, and hex is not accepted."""
    if text.startswith("-"):
        return None
    if re.fullmatch(r"[0-9]+", text):
        n = int(text)
        if n < OFPP11_OFFSET + OFPP_MAX:
            return n if n <= 0xFFFF else None
        return n - OFPP11_OFFSET if n <= 0xFFFFFFFF else None
    reserved = _PORT_ALIASES.get(text.upper())
    if reserved is not None:
        return reserved
    if port_resolver is not None:
        name = text[1:-1] if len(text) > 1 and text[0] == text[-1] == '"' else text
        port = port_resolver(name)
        if port is not None:
            return port
    return None


def format_port(port: int, port_namer: PortNamer | None = None) -> str:
    """A port as OVS prints it: reserved names, else a name, else decimal."""
    name = _PORT_NAMES.get(port)
    if name is not None:
        return name
    if port_namer is not None:
        pname = port_namer(port)
        if pname is not None:
            return pname
    return str(port)


def port_from_ofp11(port32: int) -> int | None:
    """The 16-bit port for an OpenFlow 1.1+ 32-bit port number, or None."""
    if port32 < OFPP_MAX:
        return port32
    if port32 >= OFPP11_OFFSET + OFPP_MAX:
        return port32 - OFPP11_OFFSET
    return None


def port_to_ofp11(port: int) -> int:
    """The OpenFlow 1.1+ 32-bit number of a 16-bit port."""
    return port if port < OFPP_MAX else port + OFPP11_OFFSET


# -- integers ----------------------------------------------------------------

_DECIMAL_PREFIX = re.compile(r"[ \t\n\r\f\v]*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


def parse_int_string(text: str, n_bytes: int) -> tuple[int | None, str, str]:
    """OVS's integer syntax for an ``n_bytes`` wide field.

    Returns ``(value, rest, problem)``: ``value`` is None on failure, with
    ``problem`` "syntax" or "range"; ``rest`` is the unparsed tail.  "0x"
    starts an arbitrarily long hex string (leading zeros do not count
    against the width); otherwise C's strtoull rules apply (so ``010`` is
    octal and ``-1`` wraps to the largest 64-bit value)."""
    if text[:2] in ("0x", "0X"):
        digits = re.match(r"[0-9a-fA-F]*", text[2:]).group(0)
        rest = text[2 + len(digits):]
        value = int(digits, 16) if digits else 0
        if value >> (8 * n_bytes):
            return None, rest, "range"
        return value, rest, ""
    m = _DECIMAL_PREFIX.match(text)
    if not m:
        return None, text, "syntax"
    body = m.group(0).strip()
    negative = body.startswith("-")
    digits = body.lstrip("+-")
    if digits[:2] in ("0x", "0X"):
        value = int(digits, 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    if value >= 1 << 64:
        return None, text[m.end():], "range"
    if negative and value:
        value = (1 << 64) - value
    if value >> (8 * n_bytes):
        return None, text[m.end():], "range"
    return value, text[m.end():], ""


def parse_uint(text: str, bits: int) -> int | None:
    """C ``strtoul``-style unsigned integer (decimal, 0x hex or 0 octal)
    that must fill all of ``text`` and fit in ``bits``; None otherwise."""
    value, rest, problem = parse_int_string(text, 8)
    if value is None or rest or not text or value >> bits:
        return None
    return value


def parse_table(text: str) -> int | None:
    """A table number 0..255 (decimal only, as OVS reads it), or None."""
    if re.fullmatch(r"[0-9]+", text) and int(text) <= 255:
        return int(text)
    return None


def parse_small_int(text: str, name: str, bits: int) -> int:
    """A number for a keyword such as ``priority`` (``str_to_u16`` in OVS):
    decimal, hex or octal, never negative."""
    m = re.fullmatch(r"[+]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if m:
        body = m.group(1)
        value = int(body, 16) if body[:2] in ("0x", "0X") else (
            int(body, 8) if body.startswith("0") else int(body))
        if value < 1 << bits:
            return value
    raise FlowSyntaxError(f'invalid {name} "{text}"')


# -- addresses -----------------------------------------------------------------

_MAC = re.compile(r"([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+):"
                  r"([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)")


def parse_mac(text: str) -> int | None:
    """``xx:xx:xx:xx:xx:xx`` (each part 1+ hex digits, as scanf reads it)."""
    m = _MAC.fullmatch(text)
    if not m:
        return None
    value = 0
    for part in m.groups():
        value = (value << 8) | (int(part, 16) & 0xFF)
    return value


def format_mac(value: int) -> str:
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


_IPV4 = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)")


def parse_ipv4_loose(text: str) -> tuple[int, int] | None:
    """An IPv4 address the way OVS's scanf reads it (octets wrap at 256),
    followed by nothing; returns (address, characters used)."""
    m = _IPV4.match(text)
    if not m:
        return None
    value = 0
    for part in m.groups():
        value = (value << 8) | (int(part) & 0xFF)
    return value, m.end()


def parse_ipv4_strict(text: str) -> int | None:
    """A dotted quad with every octet 0..255 (inet_pton)."""
    m = _IPV4.fullmatch(text)
    if not m or any(int(p) > 255 or (len(p) > 1 and p[0] == "0") for p in m.groups()):
        return None
    return int.from_bytes(bytes(int(p) for p in m.groups()), "big")


def format_ipv4(value: int) -> str:
    return ".".join(str(b) for b in value.to_bytes(4, "big"))


def cidr_bits(mask: int, width: int) -> int | None:
    """The prefix length of a contiguous high-bits mask, else None."""
    inv = ~mask & ((1 << width) - 1)
    if inv & (inv + 1):
        return None
    return width - inv.bit_length()


def prefix_mask(bits: int, width: int) -> int:
    """A ``width``-bit mask with its ``bits`` high bits set."""
    return ((1 << bits) - 1) << (width - bits) if bits else 0


def parse_ipv6(text: str) -> int | None:
    """inet_pton for IPv6 (an embedded dotted quad is allowed at the end)."""
    if not text or any(c not in "0123456789abcdefABCDEF:." for c in text):
        return None
    try:
        return int(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def format_ipv6(value: int) -> str:
    """inet_ntop's text for an IPv6 address (glibc rules, including the
    ``::ffff:1.2.3.4`` and ``::1.2.3.4`` forms)."""
    words = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    best_base, best_len, cur_base, cur_len = -1, 0, -1, 0
    for i, w in enumerate(words):
        if w == 0:
            if cur_base < 0:
                cur_base, cur_len = i, 1
            else:
                cur_len += 1
            if cur_len > best_len:
                best_base, best_len = cur_base, cur_len
        else:
            cur_base, cur_len = -1, 0
    if best_len < 2:
        best_base, best_len = -1, 0
    text = ""
    for i, w in enumerate(words):
        if best_base >= 0 and best_base <= i < best_base + best_len:
            if i == best_base:
                text += ":"
            continue
        if i:
            text += ":"
        if (i == 6 and best_base == 0
                and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF))):
            text += format_ipv4(value & 0xFFFFFFFF)
            break
        text += f"{w:x}"
    if best_base >= 0 and best_base + best_len == 8:
        text += ":"
    return text


# -- TCP flags -------------------------------------------------------------------

TCP_FLAG_NAMES = {0x001: "fin", 0x002: "syn", 0x004: "rst", 0x008: "psh",
                  0x010: "ack", 0x020: "urg", 0x040: "ece", 0x080: "cwr",
                  0x100: "ns", 0x200: "[200]", 0x400: "[400]", 0x800: "[800]"}
TCP_FLAGS_ALL = 0x0FFF
_TCP_FLAG_BITS = {name: bit for bit, name in TCP_FLAG_NAMES.items()}


def parse_tcp_flags(text: str) -> tuple[int, int]:
    """``syn|ack``, ``+syn-ack``, ``0x002/0x012`` or a number; (value, mask)."""
    if "/" in text:
        value_s, _, mask_s = text.partition("/")
        value, mask = parse_uint(value_s, 32), parse_uint(mask_s, 32)
        if value is not None and mask is not None:
            if (value | mask) & ~TCP_FLAGS_ALL:
                raise FlowSyntaxError(f"{text}: unknown TCP flag(s)")
            return value, mask
    if text[:1] in ("+", "-"):
        value = mask = 0
        rest = text
        while rest:
            if rest[0] not in "+-":
                raise FlowSyntaxError(f"{rest}: TCP must be preceded by '+' (for SET) "
                                      "or '-' (NOT SET)")
            sign, rest = rest[0], rest[1:]
            for bit, name in TCP_FLAG_NAMES.items():
                if rest.startswith(name) and rest[len(name):len(name) + 1] in ("", "+", "-"):
                    break
            else:
                raise FlowSyntaxError(f"{rest}: unknown TCP flag(s)")
            if mask & bit:
                raise FlowSyntaxError(f"{rest}: Each TCP flag can be specified only once")
            mask |= bit
            if sign == "+":
                value |= bit
            rest = rest[len(name):]
        return value, mask
    value = 0
    for part in text.split("|") if text else []:
        if part in _TCP_FLAG_BITS:
            value |= _TCP_FLAG_BITS[part]
            continue
        n = parse_uint(part, 64)
        if n is None or n & ~TCP_FLAGS_ALL:
            raise FlowSyntaxError(f"{part}: unknown TCP flag(s)")
        value |= n
    return value, 0xFFFF


def format_tcp_flags(value: int, mask: int) -> str:
    """OVS's format_flags_masked for TCP flags."""
    mask &= TCP_FLAGS_ALL
    if mask == TCP_FLAGS_ALL:
        if not value:
            return "0"
        return "|".join(TCP_FLAG_NAMES[1 << i] for i in range(12) if value >> i & 1)
    if not mask:
        return "0/0"
    return "".join(("+" if value >> i & 1 else "-") + TCP_FLAG_NAMES[1 << i]
                   for i in range(12) if mask >> i & 1)


# Fragment types: (name, mask, value) over the nw_frag bits (1 = a fragment,
# 2 = not the first one), in OVS's lookup order; parsing ignores case.
FRAG_TYPES = (("no", 3, 0), ("first", 3, 1), ("later", 3, 3),
              ("no", 1, 0), ("yes", 1, 1), ("not_later", 2, 0), ("later", 2, 2))


def format_frag(value: int, mask: int) -> str:
    """``no``, ``yes``, ``first``, ``later`` or ``not_later``."""
    mask &= 3
    value &= mask
    for name, m, v in FRAG_TYPES:
        if m == mask and v == value:
            return name
    return "<error>"


def hex_bytes(value: int, n_bytes: int) -> str:
    """OVS's ds_put_hex: 0x + minimal hex (bytewise), or "0"."""
    if not value:
        return "0"
    raw = value.to_bytes(n_bytes, "big").lstrip(b"\0")
    return "0x" + f"{raw[0]:x}" + raw[1:].hex()


def parse_ipv4_masked(text: str) -> tuple[int, int]:
    """``a.b.c.d[/mask]`` where mask is a prefix length or a dotted quad."""
    got = parse_ipv4_loose(text)
    if got is None:
        raise FlowSyntaxError(f"{text}: invalid IP address")
    value, used = got
    rest = text[used:]
    if not rest:
        return value, 0xFFFFFFFF
    if rest.startswith("/"):
        m = parse_ipv4_loose(rest[1:])
        if m is not None and m[1] == len(rest) - 1:
            return value, m[0]
        pm = re.fullmatch(r"/([+-]?[0-9]+)", rest)
        if pm:
            bits = int(pm.group(1))
            if not 0 <= bits <= 32:
                raise FlowSyntaxError(f"{text}: IPv4 network prefix bits not between 0 "
                                      "and 32, inclusive")
            return value, prefix_mask(bits, 32)
    raise FlowSyntaxError(f"{text}: invalid IP address")


def parse_ipv6_masked(text: str) -> tuple[int, int]:
    """An IPv6 address with an optional ``/len`` or ``/mask``."""
    addr, slash, rest = text.partition("/")
    value = parse_ipv6(addr)
    if value is None:
        raise FlowSyntaxError(f"{text}: invalid IPv6 address")
    if not slash:
        return value, (1 << 128) - 1
    if re.fullmatch(r"[+-]?[0-9]+", rest):
        bits = int(rest)
        if not 0 <= bits <= 128:
            raise FlowSyntaxError(f"{text}: IPv6 network prefix bits not between 0 "
                                  "and 128, inclusive")
        return value, prefix_mask(bits, 128)
    mask = parse_ipv6(rest)
    if mask is None:
        raise FlowSyntaxError(f"{text}: Invalid IPv6 mask")
    return value, mask


def format_ipv4_masked(value: int, mask: int) -> str:
    """``a.b.c.d`` with ``/len`` for CIDR masks or ``/a.b.c.d`` otherwise."""
    text = format_ipv4(value)
    if mask == 0xFFFFFFFF:
        return text
    bits = cidr_bits(mask, 32)
    return f"{text}/{bits}" if bits is not None else f"{text}/{format_ipv4(mask)}"


def format_ipv6_masked(value: int, mask: int) -> str:
    """An IPv6 address with ``/len`` for CIDR masks, ``/mask`` otherwise."""
    text = format_ipv6(value)
    if mask == (1 << 128) - 1:
        return text
    bits = cidr_bits(mask, 128)
    return f"{text}/{bits}" if bits is not None else f"{text}/{format_ipv6(mask)}"


# -- the key=value tokenizer (ofputil_parse_key_value) -----------------------------

def _value_len(text: str, start: int, delims: str) -> int:
    """Length of the value at ``start``: up to a delimiter, skipping over
    balanced parentheses."""
    n = start
    end = len(text)
    while n < end and text[n] not in delims:
        if text[n] == "(":
            level = 0
            while True:
                if n >= end:
                    return n - start
                c = text[n]
                if c == "(":
                    level += 1
                elif c == ")":
                    level -= 1
                n += 1
                if level <= 0:
                    break
        else:
            n += 1
    return n - start


def split_key_values(text: str) -> list[tuple[str, str]]:
    """Split ovs-ofctl syntax into (key, value) pairs the way OVS does:
    ``k=v``, ``k:v``, ``k(v)`` (parentheses nest) or a bare ``k``,
    separated by commas or white space."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in ", \t\r\n":
            i += 1
        if i >= n:
            return out
        j = i
        while j < n and text[j] not in ":=(, \t\r\n":
            j += 1
        key = text[i:j]
        delim = text[j] if j < n else ""
        i = j + (1 if delim else 0)
        if delim in (":", "="):
            delims = ", \t\r\n"
        elif delim == "(":
            delims = ")"
        else:
            out.append((key, ""))
            continue
        vend = i + _value_len(text, i, delims)
        if delim == "(" and text[vend:vend + 3] == ")->":
            vend += _value_len(text, vend, ", \t\r\n")
        out.append((key, text[i:vend]))
        i = vend + (1 if vend < n else 0)
