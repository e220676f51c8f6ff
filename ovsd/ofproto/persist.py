"""OpenFlow rules to and from msgpack-able data, for the database file.

Rules are stored in the form the switch holds them (match ints, action
objects), not as flow text: re-parsing text would depend on the OpenFlow
version it was added with and on port names that may have changed since.
The encoding is generic over the action dataclasses, so a new action kind
needs no code here.  Ints wider than 64 bits (keys, masks, IPv6 addresses)
are stored as bytes, which msgpack carries natively.
"""

from __future__ import annotations

import dataclasses

from ovsd.ofproto import actions as A
from ovsd.ofproto import fields as F
from ovsd.ofproto.match import Match
from ovsd.ofproto.rule import Rule

FORMAT = 1

_CLASSES = {cls.__name__: cls for cls in vars(A).values()
            if isinstance(cls, type) and issubclass(cls, A.Action) and cls is not A.Action}
_CLASSES["SubField"] = F.SubField


class PersistError(ValueError):
    pass


def _enc(v):
    if isinstance(v, bool) or v is None or isinstance(v, (str, bytes, float)):
        return v
    if isinstance(v, int):
        if -(1 << 63) <= v < (1 << 64):
            return v
        return {"i": v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)}
    if isinstance(v, F.MField):
        return {"f": v.name}
    if isinstance(v, (tuple, list)):
        return [_enc(x) for x in v]
    if isinstance(v, frozenset):
        return {"s": sorted(_enc(x) for x in v)}
    if dataclasses.is_dataclass(v):
        out = {"@": type(v).__name__}
        for fld in dataclasses.fields(v):
            out[fld.name] = _enc(getattr(v, fld.name))
        return out
    raise PersistError(f"cannot store {type(v).__name__} in the database")


def _dec(v):
    if isinstance(v, list):
        return tuple(_dec(x) for x in v)
    if isinstance(v, dict):
        if "i" in v:
            return int.from_bytes(v["i"], "big", signed=True)
        if "f" in v:
            return F.lookup(v["f"])
        if "s" in v:
            return frozenset(_dec(x) for x in v["s"])
        name = v.get("@")
        cls = _CLASSES.get(name)
        if cls is None:
            raise PersistError(f"unknown action {name!r} in the database")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _dec(x) for k, x in v.items() if k in names})
    return v


def encode_rule(rule: Rule) -> dict:
    return {
        "table": rule.table_id, "priority": rule.priority,
        "value": _enc(rule.match.value), "mask": _enc(rule.match.mask),
        "actions": _enc(rule.actions), "cookie": _enc(rule.cookie),
        "idle_timeout": rule.idle_timeout, "hard_timeout": rule.hard_timeout,
        "importance": rule.importance, "flags": sorted(rule.flags),
        "created": rule.created, "modified": rule.modified,
    }


def decode_rule(d: dict) -> Rule:
    try:
        return Rule(d["table"], d["priority"], Match(_dec(d["value"]), _dec(d["mask"])),
                    _dec(d["actions"]), cookie=_dec(d["cookie"]),
                    idle_timeout=d["idle_timeout"], hard_timeout=d["hard_timeout"],
                    importance=d["importance"], flags=frozenset(d["flags"]),
                    created=d["created"], modified=d["modified"])
    except (KeyError, TypeError) as e:
        raise PersistError(f"a stored flow is damaged ({e})") from None


def encode_bridges(ofprotos) -> dict:
    """{"format": 1, "bridges": {name: [rule, ...]}} for every bridge."""
    return {"format": FORMAT,
            "bridges": {o.name: [encode_rule(r) for r in o.rules()] for o in ofprotos}}


def decode_bridges(data: dict | None) -> dict[str, list[Rule]]:
    if not data:
        return {}
    if data.get("format") != FORMAT:
        raise PersistError(f"stored flows have format {data.get('format')!r}; "
                           f"this ovsd reads format {FORMAT}")
    return {name: [decode_rule(r) for r in rules]
            for name, rules in data.get("bridges", {}).items()}
