"""ovsd: the switch daemon.

    ovsd --rundir DIR [--config FILE] [--db FILE] [--log-level LEVEL]

Runs in the foreground: opens (or creates) the configuration database, makes
the datapath match it, serves JSON-RPC on DIR/ovsd.sock until SIGTERM or
SIGINT, then closes every port and removes its socket and pidfile.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

from ovsd.config import LOG_LEVELS, Config, ConfigError, load_config
from ovsd.metrics import address_arg as metrics_address
from ovsd.metrics import parse_address

log = logging.getLogger("ovsd")

SOCKET_NAME = "ovsd.sock"
PIDFILE_NAME = "ovsd.pid"


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ovsd", description=__doc__.split("\n\n")[0])
    p.add_argument("--rundir", help="directory for ovsd.sock, ovsd.pid, ovsd.log and, by "
                   "default, the database conf.db (default: from --config, else "
                   "/var/run/ovsd)")
    p.add_argument("--config", help="TOML configuration file (see configs/ovsd.toml)")
    p.add_argument("--db", help="database file (default: RUNDIR/conf.db)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default: from --config, else info")
    p.add_argument("--ovsdb-tcp", type=int, metavar="PORT",
                   help="also serve OVSDB on 127.0.0.1:PORT (ptcp:PORT:127.0.0.1); "
                   "RUNDIR/db.sock is always served (default: from --config, else off)")
    p.add_argument("--metrics", type=metrics_address, metavar="[ADDR:]PORT",
                   help="serve Prometheus metrics at http://ADDR:PORT/metrics (ADDR: "
                   "an IP address, default 127.0.0.1; PORT 0: any free port, logged; "
                   "default: from --config, else off)")
    return p.parse_args(argv)


def effective_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    if args.rundir:
        cfg.rundir = args.rundir
    if args.db:
        cfg.db = args.db
    if args.log_level:
        cfg.log_level = args.log_level
    cfg.rundir = os.path.abspath(cfg.rundir)
    if cfg.db:
        cfg.db = os.path.abspath(cfg.db)
    return cfg


def setup_logging(cfg: Config) -> None:
    fmt = logging.Formatter("%(asctime)s|%(name)s|%(levelname)s|%(message)s",
                            "%Y-%m-%dT%H:%M:%S")
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(cfg.log_level.upper())
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    try:
        fileh = logging.FileHandler(cfg.log_path)
    except OSError as e:
        log.warning("cannot write the log file %s (%s); logging to stderr only",
                    cfg.log_path, e.strerror)
    else:
        fileh.setFormatter(fmt)
        root.addHandler(fileh)


class PidFile:
    """RUNDIR/ovsd.pid, locked while the daemon runs so a second ovsd on the
    same rundir is refused instead of fighting over the socket and database."""

    def __init__(self, rundir: str):
        self.path = Path(rundir) / PIDFILE_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(f"another ovsd (pid {other}) is running with rundir "
                               f"{self.path.parent}; stop it or use another --rundir")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None


async def serve(cfg: Config, ovsdb_tcp: int | None = None,
                metrics_addr: tuple[str, int] | None = None) -> None:
    from ovsd import switch as switch_mod
    from ovsd.ovsdb.server import start_for_switch

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        switch = switch_mod.Switch.open(cfg)
    except switch_mod.StartupError as e:
        raise StartupError(str(e)) from None
    ovsdb = None
    metrics = None
    try:
        sock_path = os.path.join(cfg.rundir, SOCKET_NAME)
        try:
            await switch.start(sock_path)
        except OSError as e:
            raise StartupError(f"cannot serve on {sock_path}: {e.strerror or e}") from None
        try:
            ovsdb = await start_for_switch(switch, cfg.rundir, ovsdb_tcp)
        except OSError as e:
            raise StartupError(f"cannot serve OVSDB in {cfg.rundir} (or on TCP port "
                               f"{ovsdb_tcp}): {e.strerror or e}") from None
        if metrics_addr is not None:
            from ovsd.metrics import format_address, start_metrics
            try:
                metrics = await start_metrics(switch, *metrics_addr)
            except OSError as e:
                raise StartupError(f"cannot serve metrics on "
                                   f"{format_address(*metrics_addr)}: {e.strerror or e}; "
                                   "choose another --metrics address or port") from None
        log.info("ovsd ready: rundir %s, database %s", cfg.rundir, cfg.db_path)
        await stop.wait()
        log.info("stopping")
    finally:
        if metrics is not None:
            await metrics.close()
        if ovsdb is not None:
            await ovsdb.close()
        await switch.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        cfg = effective_config(args)
        try:
            os.makedirs(cfg.rundir, exist_ok=True)
        except OSError as e:
            raise StartupError(f"cannot create rundir {cfg.rundir}: {e.strerror}") from None
        setup_logging(cfg)
        pidfile = PidFile(cfg.rundir)
        pidfile.acquire()
    except (ConfigError, StartupError) as e:
        print(f"ovsd: {e}", file=sys.stderr)
        sys.exit(1)
    try:
        metrics = args.metrics or (parse_address(cfg.metrics) if cfg.metrics else None)
        ovsdb_tcp = args.ovsdb_tcp if args.ovsdb_tcp is not None else (cfg.ovsdb_tcp or None)
        asyncio.run(serve(cfg, ovsdb_tcp, metrics))
    except StartupError as e:
        log.error("%s", e)
        sys.exit(1)
    finally:
        pidfile.release()
    log.info("stopped")


if __name__ == "__main__":
    main()
