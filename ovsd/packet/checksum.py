"""Checksums the header rewrites keep right: the Internet checksum and CRC32c.

Internet checksum arithmetic uses one fact: 2**16 == 1 (mod 0xffff), so the
ones'-complement sum of the 16-bit big-endian words of a byte string is that
string, read as one big-endian integer, modulo 0xffff.  A whole checksum or
an incremental update over a 128-bit address is then a single big-int
operation instead of a loop over words.

SCTP's CRC32c cannot be updated like that, but it is linear over GF(2): for
two messages of the same length, ``crc(a) ^ crc(b)`` depends only on
``a ^ b``.  A port change alters the first four bytes, so the new checksum is
the old one XOR the CRC of (those four changed bytes followed by zeros),
which costs O(log length) instead of a pass over the packet.  A wrong
checksum stays wrong by the same XOR, as OVS's recompute-and-XOR does.
"""

from __future__ import annotations

_U16 = 0xFFFF


def ones_sum(data) -> int:
    """Ones'-complement sum of ``data`` as 16-bit big-endian words (odd tail padded)."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    x = int.from_bytes(data, "big")
    if not x:
        return 0
    # A non-zero sum of words is never +0 in ones' complement: 0xffff, not 0.
    return x % _U16 or _U16


def internet_checksum(data, initial: int = 0) -> int:
    """The RFC 1071 checksum of ``data`` (checksum field zeroed), ``initial``
    being a ones'-complement sum to add (a pseudo-header's)."""
    s = ones_sum(data) + initial
    while s > _U16:
        s = (s & _U16) + (s >> 16)
    return ~s & _U16


def csum_replace(csum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: the checksum after a field changed from ``old`` to ``new``.

    ``old``/``new`` are the field's 16-bit words read as one big-endian
    integer (a byte that is the low half of its word is passed as is, a high
    half shifted left by 8).  Any width that is whole words works.
    """
    s = ((~csum & _U16) + new - old) % _U16
    # The sum is a ones'-complement value in 1..0xffff; 0 mod 0xffff is 0xffff.
    return _U16 - s if s else 0


# -- CRC32c (Castagnoli), as SCTP uses it -------------------------------------

_CRC32C_POLY = 0x82F63B78  # bit-reversed 0x1EDC6F41


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CRC32C_POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data, crc: int = 0) -> int:
    """CRC32c of ``data`` (``crc32c(b"123456789") == 0xE3069283``).

    SCTP stores it in its checksum field least significant byte first.
    A byte loop: for tests and slow paths; rewrites use ``crc32c_xor_delta``.
    """
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _mulmod(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial, both bit-reversed (bit 31 is x**0)."""
    product = 0
    m = 1 << 31
    while m and a:
        if a & m:
            product ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _CRC32C_POLY if b & 1 else b >> 1
    return product


# _X_POW2[k] = x**(2**k) mod P, so that x**n is a product over n's set bits.
_X_POW2 = [1 << 30]  # x**1
for _ in range(63):
    _X_POW2.append(_mulmod(_X_POW2[-1], _X_POW2[-1]))


def _x_pow(n: int) -> int:
    p = 1 << 31  # x**0
    k = 0
    while n:
        if n & 1:
            p = _mulmod(_X_POW2[k], p)
        n >>= 1
        k += 1
    return p


def crc32c_xor_delta(diff, trailing: int) -> int:
    """``crc32c(a) ^ crc32c(b)`` for two messages of the same length whose
    XOR is ``diff`` followed by ``trailing`` zero bytes."""
    reg = 0
    table = _TABLE
    for b in diff:
        reg = table[(reg ^ b) & 0xFF] ^ (reg >> 8)
    # Each zero byte appended multiplies the register by x**8.
    return _mulmod(_x_pow(8 * trailing), reg) if trailing and reg else reg
