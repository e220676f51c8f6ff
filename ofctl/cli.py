"""ofctl: the command line for ovsd (bridges, ports, the database, flows, trace).

Every verb is one JSON-RPC call to the daemon (docs/rpc.md); the daemon
returns structured data plus the text an OVS user expects, which ofctl prints
(or, with --json, the structured result).  As with ovs-ofctl's getopt, the
options may come before or after the verb.
"""

from __future__ import annotations

import json
import sys

import click

from ofctl.client import OfctlError, RpcClient, rundir_default

PROTOCOLS = ("OpenFlow10", "OpenFlow11", "OpenFlow12", "OpenFlow13", "OpenFlow14",
             "OpenFlow15")

# Options that take a value, and flags; both may appear anywhere on the line.
_VALUE_OPTS = {"--rundir", "-O", "--protocols", "--timeout", "--columns"}
_FLAG_OPTS = {"--json", "--strict", "--may-exist", "--if-exists", "--help", "-h"}


def _hoist_options(argv: list[str]) -> list[str]:
    """Move options found after the verb in front of it (getopt's permutation)."""
    opts: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i + 1:])
            break
        name = a.split("=", 1)[0]
        if name in _VALUE_OPTS and "=" not in a:
            opts.extend(argv[i:i + 2])  # "--rundir DIR", "-O OpenFlow13"
            i += 2
        elif name in _VALUE_OPTS or name in _FLAG_OPTS or a.startswith("-O"):
            opts.append(a)  # "--rundir=DIR", "--json", "-OOpenFlow13"
            i += 1
        else:
            rest.append(a)
            i += 1
    return opts + rest


class Ctx:
    def __init__(self, rundir: str, protocol: str, as_json: bool, strict: bool,
                 may_exist: bool, if_exists: bool, timeout: float, columns: str | None):
        self.rundir = rundir
        self.protocol = protocol
        self.as_json = as_json
        self.strict = strict
        self.may_exist = may_exist
        self.if_exists = if_exists
        self.columns = columns
        self.client = RpcClient(rundir, timeout)

    def call(self, method: str, **params):
        return self.client.call(method, **params)

    def emit(self, result, text: str | None = None) -> None:
        """Print the structured result as JSON, or the human text."""
        if self.as_json:
            click.echo(json.dumps(result, indent=2, sort_keys=True))
        elif text:
            click.echo(text, nl=not text.endswith("\n"))


def _protocol(value: str) -> str:
    # ovs-ofctl accepts a comma-separated list; the highest one is used.
    versions = [v.strip() for v in value.split(",") if v.strip()]
    for v in versions:
        if v not in PROTOCOLS:
            raise click.BadParameter(
                f"unknown OpenFlow version {v!r}; expected one of {', '.join(PROTOCOLS)}",
                param_hint="-O")
    return max(versions, key=PROTOCOLS.index) if versions else "OpenFlow10"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rundir", default=rundir_default, show_default="$OVSD_RUNDIR or /var/run/ovsd",
              help="The daemon's run directory (holds ovsd.sock).")
@click.option("-O", "--protocols", "protocol", default="OpenFlow10",
              help="OpenFlow version for flow syntax and output (e.g. OpenFlow13).")
@click.option("--json", "as_json", is_flag=True, help="Print the structured result as JSON.")
@click.option("--strict", is_flag=True, help="mod-flows/del-flows: match priority and fields exactly.")
@click.option("--may-exist", is_flag=True, help="add-br/add-port: no error if it exists.")
@click.option("--if-exists", is_flag=True, help="del-br/del-port/get: no error if it is missing.")
@click.option("--timeout", type=float, default=60.0, help="Seconds to wait for the daemon.")
@click.option("--columns", default=None, help="list: only these columns (comma-separated).")
@click.pass_context
def cli(ctx, rundir, protocol, as_json, strict, may_exist, if_exists, timeout, columns):
    """Configure and inspect a running ovsd."""
    ctx.obj = Ctx(rundir, _protocol(protocol), as_json, strict, may_exist, if_exists,
                  timeout, columns)


# -- bridges ----------------------------------------------------------------

@cli.command("add-br")
@click.argument("bridge")
@click.pass_obj
def add_br(c: Ctx, bridge):
    """Create BRIDGE (with a NORMAL flow, as OVS does)."""
    c.emit(c.call("add_br", bridge=bridge, may_exist=c.may_exist))


@cli.command("del-br")
@click.argument("bridge")
@click.pass_obj
def del_br(c: Ctx, bridge):
    """Delete BRIDGE and all its ports and flows."""
    c.emit(c.call("del_br", bridge=bridge, if_exists=c.if_exists))


@cli.command("list-br")
@click.pass_obj
def list_br(c: Ctx):
    """List the bridges, one per line."""
    r = c.call("list_br")
    c.emit(r, "".join(f"{b}\n" for b in r["bridges"]))


# -- ports ------------------------------------------------------------------

@cli.command("add-port")
@click.argument("bridge")
@click.argument("port")
@click.argument("settings", nargs=-1)
@click.pass_obj
def add_port(c: Ctx, bridge, port, settings):
    """Add PORT to BRIDGE; SETTINGS are Interface columns: type=T ofport_request=N options:K=V ..."""
    c.emit(c.call("add_port", bridge=bridge, port=port, settings=list(settings),
                  may_exist=c.may_exist))


@cli.command("del-port")
@click.argument("args", nargs=-1, required=True)
@click.pass_obj
def del_port(c: Ctx, args):
    """del-port [BRIDGE] PORT: remove PORT."""
    if len(args) > 2:
        raise click.UsageError("del-port takes [BRIDGE] PORT")
    bridge, port = (None, args[0]) if len(args) == 1 else args
    c.emit(c.call("del_port", bridge=bridge, port=port, if_exists=c.if_exists))


@cli.command("list-ports")
@click.argument("bridge")
@click.pass_obj
def list_ports(c: Ctx, bridge):
    """List BRIDGE's ports, one per line."""
    r = c.call("list_ports", bridge=bridge)
    c.emit(r, "".join(f"{p['name']}\n" for p in r["ports"]))


@cli.command("show")
@click.argument("bridge")
@click.pass_obj
def show(c: Ctx, bridge):
    """BRIDGE's ports: number, name, type, state and counters (like ovs-ofctl show)."""
    r = c.call("show", bridge=bridge)
    c.emit(r, r["text"])


@cli.command("vhost-show")
@click.argument("port")
@click.pass_obj
def vhost_show(c: Ctx, port):
    """PORT's vhost-user details: socket, state, features, rings, last error."""
    r = c.call("vhost_show", port=port)
    c.emit(r, r["text"])


@cli.command("port-status")
@click.argument("port")
@click.pass_obj
def port_status(c: Ctx, port):
    """Whether PORT forwards, why not, and what to do; then its facts."""
    r = c.call("port_status", port=port)
    c.emit(r, r["text"])


# -- the database (ovs-vsctl's generic verbs) -------------------------------

@cli.command("set")
@click.argument("table")
@click.argument("record")
@click.argument("assignments", nargs=-1, required=True)
@click.pass_obj
def db_set(c: Ctx, table, record, assignments):
    """set TABLE RECORD COLUMN[:KEY]=VALUE..."""
    c.emit(c.call("db_set", table=table, record=record, assignments=list(assignments)))


@cli.command("get")
@click.argument("table")
@click.argument("record")
@click.argument("columns", nargs=-1, required=True)
@click.pass_obj
def db_get(c: Ctx, table, record, columns):
    """get TABLE RECORD COLUMN[:KEY]..."""
    r = c.call("db_get", table=table, record=record, columns=list(columns),
               if_exists=c.if_exists)
    c.emit(r, r["text"])


@cli.command("list")
@click.argument("table")
@click.argument("records", nargs=-1)
@click.pass_obj
def db_list(c: Ctx, table, records):
    """list TABLE [RECORD...]"""
    cols = [x for x in c.columns.split(",") if x] if c.columns else None
    r = c.call("db_list", table=table, records=list(records), columns=cols)
    c.emit(r, r["text"])


@cli.command("remove")
@click.argument("table")
@click.argument("record")
@click.argument("column")
@click.argument("values", nargs=-1, required=True)
@click.pass_obj
def db_remove(c: Ctx, table, record, column, values):
    """remove TABLE RECORD COLUMN VALUE|KEY|KEY=VALUE..."""
    c.emit(c.call("db_remove", table=table, record=record, column=column, values=list(values)))


@cli.command("clear")
@click.argument("table")
@click.argument("record")
@click.argument("columns", nargs=-1, required=True)
@click.pass_obj
def db_clear(c: Ctx, table, record, columns):
    """clear TABLE RECORD COLUMN..."""
    c.emit(c.call("db_clear", table=table, record=record, columns=list(columns)))


# -- flows ------------------------------------------------------------------

@cli.command("add-flow")
@click.argument("bridge")
@click.argument("flow")
@click.pass_obj
def add_flow(c: Ctx, bridge, flow):
    """add-flow BRIDGE FLOW (ovs-ofctl syntax)."""
    c.emit(c.call("add_flow", bridge=bridge, flow=flow, protocol=c.protocol))


@cli.command("add-flows")
@click.argument("bridge")
@click.argument("file", type=click.File("r"))
@click.pass_obj
def add_flows(c: Ctx, bridge, file):
    """add-flows BRIDGE FILE: one flow a line, '#' comments; all or nothing ('-' = stdin)."""
    lines = []
    for n, line in enumerate(file, 1):
        text = line.strip()
        if text and not text.startswith("#"):
            lines.append([n, text])
    c.emit(c.call("add_flows", bridge=bridge, flows=lines, protocol=c.protocol))


@cli.command("mod-flows")
@click.argument("bridge")
@click.argument("flow")
@click.pass_obj
def mod_flows(c: Ctx, bridge, flow):
    """mod-flows BRIDGE FLOW: change the actions of matching flows (--strict: exact)."""
    c.emit(c.call("mod_flows", bridge=bridge, flow=flow, strict=c.strict, protocol=c.protocol))


@cli.command("del-flows")
@click.argument("bridge")
@click.argument("match", required=False, default="")
@click.pass_obj
def del_flows(c: Ctx, bridge, match):
    """del-flows BRIDGE [MATCH]: delete matching flows (all when no MATCH; --strict: exact)."""
    c.emit(c.call("del_flows", bridge=bridge, match=match, strict=c.strict,
                  protocol=c.protocol))


@cli.command("dump-flows")
@click.argument("bridge")
@click.argument("match", required=False, default="")
@click.pass_obj
def dump_flows(c: Ctx, bridge, match):
    """dump-flows BRIDGE [MATCH]: print flows with their counters."""
    r = c.call("dump_flows", bridge=bridge, match=match, protocol=c.protocol)
    c.emit(r, r["text"])


@cli.command("trace")
@click.argument("bridge")
@click.argument("flow")
@click.argument("packet", required=False)
@click.pass_obj
def trace(c: Ctx, bridge, flow, packet):
    """trace BRIDGE FLOW [HEXPACKET]: the tables a packet walks and its datapath actions."""
    r = c.call("trace", bridge=bridge, flow=flow, packet=packet)
    c.emit(r, r["text"])


# -- MAC learning and injection -----------------------------------------------

@cli.command("fdb/show")
@click.argument("bridge")
@click.pass_obj
def fdb_show(c: Ctx, bridge):
    """The MAC table NORMAL has learned on BRIDGE."""
    r = c.call("fdb_show", bridge=bridge)
    c.emit(r, r["text"])


@cli.command("fdb/flush")
@click.argument("bridge", required=False)
@click.pass_obj
def fdb_flush(c: Ctx, bridge):
    """Forget learned MACs on BRIDGE (all bridges when omitted)."""
    r = c.call("fdb_flush", bridge=bridge)
    c.emit(r, "table successfully flushed\n")


@cli.command("inject")
@click.argument("bridge")
@click.argument("port")
@click.argument("packet")
@click.pass_obj
def inject(c: Ctx, bridge, port, packet):
    """inject BRIDGE PORT HEXPACKET: receive a frame on PORT and process it now."""
    c.emit(c.call("inject", bridge=bridge, port=port, packet=packet))


# -- PMDs and the datapath -------------------------------------------------------

@cli.command("pmd-stats-show")
@click.pass_obj
def pmd_stats_show(c: Ctx):
    """Per PMD: packets, EMC/megaflow hits, upcalls, busy and idle time."""
    r = c.call("pmd_stats_show")
    c.emit(r, r["text"])


@cli.command("drop-stats")
@click.argument("target", required=False)
@click.option("--all", "show_all", is_flag=True, help="also the reasons with no drops")
@click.option("--watch", is_flag=True, help="print again every --interval seconds")
@click.option("--interval", type=float, default=1.0, show_default=True)
@click.option("--count", type=int, default=0, help="with --watch: stop after COUNT prints")
@click.pass_obj
def drop_stats(c: Ctx, target, show_all, watch, interval, count):
    """Packets dropped and why, in total and per port (of bridge or port TARGET)."""
    import time
    printed = 0
    while True:
        params = {"all": show_all} if target is None else {"target": target, "all": show_all}
        r = c.call("drop_stats", **params)
        if watch and not c.as_json:
            click.echo(time.strftime("%H:%M:%S"))
        c.emit(r, r["text"])
        printed += 1
        if not watch or (count and printed >= count):
            return
        time.sleep(interval)


@cli.command("pmd-stats-clear")
@click.pass_obj
def pmd_stats_clear(c: Ctx):
    """Start the PMD counters again from zero."""
    c.emit(c.call("pmd_stats_clear"))


@cli.command("pmd-rxq-show")
@click.pass_obj
def pmd_rxq_show(c: Ctx):
    """Which PMD polls which rx queue, and how busy each queue keeps it."""
    r = c.call("pmd_rxq_show")
    c.emit(r, r["text"])


@cli.command("dump-dp-flows")
@click.pass_obj
def dump_dp_flows(c: Ctx):
    """The datapath's cached flows (megaflows) with their masks and counters."""
    r = c.call("dump_dp_flows")
    c.emit(r, r["text"])


@cli.command("capture")
@click.argument("port")
@click.option("--rx", "direction", flag_value="rx", help="only what PORT receives")
@click.option("--tx", "direction", flag_value="tx", help="only what PORT sends")
@click.option("--both", "direction", flag_value="both", default=True,
              help="both directions (the default)")
@click.option("-c", "count", type=int, default=0, help="stop after COUNT packets")
@click.option("-w", "write", default="-", show_default=True,
              help="pcapng file to write; - for stdout (pipe it to tshark -r -)")
@click.option("--filter", "match", help="only packets matching this ovs-ofctl match")
@click.option("--duration", type=float, default=0.0, help="stop after this many seconds")
@click.pass_obj
def capture(c: Ctx, port, direction, count, write, match, duration):
    """Stream the packets PORT receives and/or sends, taken in the datapath (so
    vhost-user and afxdp ports too), as pcapng; dropped ones carry the reason."""
    import time
    from ofctl.pcapng import PcapngWriter
    params = {"port": port, "direction": direction}
    if match:
        params["filter"] = match
    sid = c.call("capture_start", **params)["id"]
    out = sys.stdout.buffer if write == "-" else open(write, "wb")
    writer = PcapngWriter(out, port)
    got = 0
    end = time.monotonic() + duration if duration else None
    try:
        while not count or got < count:
            r = c.call("capture_read", id=sid, max=(count - got) if count else 1000)
            for p in r["packets"]:
                writer.write(p["time"], bytes.fromhex(p["frame"]), p["dir"], p["drop"])
            got += len(r["packets"])
            if end is not None and time.monotonic() >= end:
                break
            if not r["packets"]:
                time.sleep(0.05)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        try:
            totals = c.call("capture_stop", id=sid)
            click.echo(f"ofctl: {port}: {got} packets captured, {totals['lost']} lost by the "
                       "capture", err=True)
        except OfctlError:
            pass
        if out is not sys.stdout.buffer:
            out.close()


@cli.command("doctor")
@click.pass_obj
def doctor(c: Ctx):
    """Check the host for what ovsd needs; each problem comes with its fix. Exit 1 on FAIL."""
    from ofctl import doctor as doc
    checks = doc.run_checks(c.rundir, timeout=min(c.client.timeout, 10.0))
    click.echo(doc.as_json(checks, c.rundir) if c.as_json else doc.format_text(checks),
               nl=c.as_json)
    if doc.worst(checks) == doc.FAIL:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    args = _hoist_options(list(sys.argv[1:] if argv is None else argv))
    try:
        cli.main(args=args, prog_name="ofctl", standalone_mode=False)
    except OfctlError as e:
        click.echo(f"ofctl: {e}", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(1 if e.exit_code == 2 else e.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
