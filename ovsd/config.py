"""ovsd's startup configuration (configs/ovsd.toml).

The file holds what the daemon needs before it can open its database (rundir,
database path, logging) and a seed for a fresh database (Open_vSwitch
other_config, bridges with their flows).  Once a database exists it is the
configuration; the seed is not applied again.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RUNDIR = "/var/run/ovsd"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    pass


@dataclass
class BridgeSeed:
    name: str
    flows: list[str] | None = None  # None: the NORMAL flow add-br gives


@dataclass
class Config:
    rundir: str = DEFAULT_RUNDIR
    db: str = ""
    log_level: str = "info"
    log_file: str = ""
    #: Prometheus metrics: "[ADDR:]PORT" (see ovsd.metrics.parse_address); "" is off.
    metrics: str = ""
    #: OVSDB also on 127.0.0.1:PORT; 0 is off (RUNDIR/db.sock is always served).
    ovsdb_tcp: int = 0
    other_config: dict[str, str] = field(default_factory=dict)
    bridges: list[BridgeSeed] = field(default_factory=list)

    @property
    def db_path(self) -> str:
        return self.db or str(Path(self.rundir) / "conf.db")

    @property
    def log_path(self) -> str:
        return self.log_file or str(Path(self.rundir) / "ovsd.log")


def _expect(table: dict, key: str, kind: type, where: str):
    value = table[key]
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def parse_config(data: dict, where: str = "config") -> Config:
    cfg = Config()
    known_top = {"ovsd", "other_config", "bridge"}
    unknown = set(data) - known_top
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)}; "
                          f"expected {sorted(known_top)}")
    section = data.get("ovsd", {})
    keys = {"rundir": str, "db": str, "log_level": str, "log_file": str, "metrics": str,
            "ovsdb_tcp": int}
    for key in section:
        if key not in keys:
            raise ConfigError(f"{where}: unknown key [ovsd] {key!r}; expected one of "
                              f"{', '.join(keys)}")
        setattr(cfg, key, _expect(section, key, keys[key], f"{where} [ovsd]"))
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"{where}: log_level {cfg.log_level!r} is not one of "
                          f"{', '.join(LOG_LEVELS)}")
    if cfg.metrics:
        from ovsd.metrics import parse_address
        try:
            parse_address(cfg.metrics)
        except ValueError as e:
            raise ConfigError(f"{where} [ovsd] metrics: {e}") from None
    if not 0 <= cfg.ovsdb_tcp <= 65535 or isinstance(cfg.ovsdb_tcp, bool):
        raise ConfigError(f"{where} [ovsd] ovsdb_tcp: {cfg.ovsdb_tcp!r} is not a TCP port "
                          "(1 to 65535; 0 or absent: off)")
    for k, v in data.get("other_config", {}).items():
        if not isinstance(v, str):
            raise ConfigError(f"{where}: [other_config] {k} must be a string, got {v!r}")
        cfg.other_config[k] = v
    bridges = data.get("bridge", [])
    if not isinstance(bridges, list):
        raise ConfigError(f"{where}: 'bridge' must be an array of tables ([[bridge]])")
    for i, b in enumerate(bridges):
        w = f"{where} [[bridge]] #{i + 1}"
        if not isinstance(b, dict) or "name" not in b:
            raise ConfigError(f"{w}: needs a name")
        flows = b.get("flows")
        if flows is not None and (not isinstance(flows, list)
                                  or not all(isinstance(f, str) for f in flows)):
            raise ConfigError(f"{w}: flows must be a list of strings in ovs-ofctl syntax")
        cfg.bridges.append(BridgeSeed(_expect(b, "name", str, w),
                                      None if flows is None else list(flows)))
    return cfg


def load_config(path: str | None) -> Config:
    """The configuration from ``path``, or the built-in defaults when None."""
    if path is None:
        return default_config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    return parse_config(data, path)


def default_config() -> Config:
    """Settings for a daemon started without --config: a fresh database stays
    empty (no bridge), so scripts can build exactly the switch they want."""
    return Config()
