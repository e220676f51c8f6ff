"""docs/rpc.md tells the truth: every method of the daemon is documented, and
every example in it is replayed, in order, against a fresh real daemon, which
must answer what the page shows.

The examples are `--> REQUEST` lines, each followed by its `<-- REPLY` line
(none for a notification).  Paths in them use the default rundir
/var/run/ovsd, mapped to the test's own.  Regenerate the replies after a
change with:

    .venv/bin/python -m tests.e2e.test_rpc_docs
"""

from __future__ import annotations

import json
import re
import os
import socket
import sys
import tempfile
from pathlib import Path

from tests.daemon import ROOT, Daemon

DOC = ROOT / "docs" / "rpc.md"
DOC_RUNDIR = "/var/run/ovsd"
BRIDGE = "br0"

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_VOLATILE = [
    (re.compile(r"duration=\d+(?:\.\d+)?s"), "duration=0.000s"),
    (re.compile(r"(idle_age|hard_age)=\d+"), r"\1=0"),
    (re.compile(r"used:\d+\.\d+s"), "used:0.000s"),
    (re.compile(r"([0-9a-f]{2}(?::[0-9a-f]{2}){5}) +\d+$", re.M), r"\1    0"),  # fdb ages
]


def examples(text: str) -> list[tuple[str, str | None]]:
    """(request, documented reply or None) for every example, in order."""
    out: list[tuple[str, str | None]] = []
    for line in text.splitlines():
        if line.startswith("--> "):
            out.append((line[4:], None))
        elif line.startswith("<-- "):
            assert out and out[-1][1] is None, f"a reply without its request: {line}"
            out[-1] = (out[-1][0], line[4:])
    return out


def expects_reply(request: str) -> bool:
    try:
        msg = json.loads(request)
    except ValueError:
        return True
    if isinstance(msg, list):
        return not msg or any(not isinstance(m, dict) or "id" in m for m in msg)
    return not isinstance(msg, dict) or "id" in msg


def replay(d: Daemon, requests: list[str]) -> list[str | None]:
    """The daemon's reply line to each request (None for notifications)."""
    rundir = str(d.rundir)
    replies: list[str | None] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(d.sock))
        f = s.makefile("rwb")
        for req in requests:
            f.write(req.replace(DOC_RUNDIR, rundir).encode() + b"\n")
            f.flush()
            if expects_reply(req):
                line = f.readline().decode().rstrip("\n")
                replies.append(line.replace(rundir, DOC_RUNDIR))
            else:
                replies.append(None)
    return replies


def _without_local(obj):
    """The bridge's own port is a kernel tap (type internal): whether it opens
    depends on the host, so it is left out of the comparison."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "sent" and isinstance(v, dict):
                v = {p: n for p, n in v.items() if p != BRIDGE}
            elif k == "ports" and isinstance(v, list):
                v = [p for p in v if not (isinstance(p, dict) and p.get("name") == BRIDGE)]
            elif k == "text" and isinstance(v, str):
                v = re.sub(rf"^ (LOCAL|-1)\({BRIDGE}\):.*\n(^     .*\n)*", "", v, flags=re.M)
            out[k] = _without_local(v)
        return out
    if isinstance(obj, list):
        return [_without_local(x) for x in obj]
    return obj


def normalize(line: str):
    for pattern, repl in _VOLATILE:
        line = pattern.sub(repl, line)
    line = _UUID.sub("UUID", line)
    obj = json.loads(line)

    def walk(o):
        if isinstance(o, dict):
            return {k: (0 if k in ("duration", "age", "time") else walk(v))
                    for k, v in o.items()}
        if isinstance(o, list):
            return [walk(x) for x in o]
        if isinstance(o, str):
            for pattern, repl in _VOLATILE:
                o = pattern.sub(repl, o)
        return o
    return _without_local(walk(obj))


def documented_methods(text: str) -> list[str]:
    return re.findall(r"^#### `(\w+)`", text, flags=re.M)


def methods_of_daemon() -> set[str]:
    from ovsd.rpc.methods import build_methods
    return set(build_methods(object()))


# -- the tests ------------------------------------------------------------------------------

def test_every_method_is_documented_once():
    text = DOC.read_text()
    documented = documented_methods(text)
    assert len(documented) == len(set(documented))
    assert set(documented) == methods_of_daemon()


def test_every_method_has_an_example():
    text = DOC.read_text()
    called = set()
    for req, _ in examples(text):
        try:
            msg = json.loads(req)
        except ValueError:
            continue
        for m in msg if isinstance(msg, list) else [msg]:
            if isinstance(m, dict) and isinstance(m.get("method"), str):
                called.add(m["method"])
    assert methods_of_daemon() <= called


def test_error_codes_are_documented():
    from ovsd.rpc import server
    text = DOC.read_text()
    codes = [v for k, v in vars(server).items()
             if k.isupper() and isinstance(v, int) and -32768 <= v <= -32000]
    assert len(codes) == 10
    for code in codes:
        assert f"`{code}`" in text, code


def test_examples_are_what_the_daemon_answers(tmp_path):
    pairs = examples(DOC.read_text())
    assert len(pairs) > 40
    with Daemon(tmp_path / "run") as d:
        got = replay(d, [req for req, _ in pairs])
    for (req, want), reply in zip(pairs, got):
        if want is None:
            assert reply is None, f"{req}\nexpected no reply, got {reply}"
            continue
        assert reply is not None, f"{req}\nexpects a reply but is a notification"
        assert normalize(reply) == normalize(want), f"\n--> {req}\n<-- {reply}"


# -- regenerating the replies ---------------------------------------------------------------

def regenerate() -> None:
    # The examples' bridge br0 gets a kernel tap named br0 for its LOCAL port.
    # If another switch holds that name, LOCAL is missing and NORMAL floods
    # differently: the replies written would not be what a clean machine gets.
    if os.path.exists("/sys/class/net/br0"):
        raise SystemExit("an interface named br0 exists (another ovsd running?): stop it "
                         "before regenerating, or the examples record its absence")
    text = DOC.read_text()
    pairs = examples(text)
    with tempfile.TemporaryDirectory() as tmp, Daemon(Path(tmp) / "run") as d:
        replies = iter(replay(d, [req for req, _ in pairs]))
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("<-- "):
            continue
        out.append(line)
        if line.startswith("--> "):
            reply = next(replies)
            if reply is not None:
                out.append("<-- " + reply)
    DOC.write_text("\n".join(out) + "\n")
    print(f"{DOC}: {len(pairs)} examples regenerated", file=sys.stderr)


if __name__ == "__main__":
    regenerate()
