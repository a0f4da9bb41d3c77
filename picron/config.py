"""Configuration (SPEC §3): the TOML file, the database location and the local node name."""
from __future__ import annotations

import os
from collections import namedtuple

from picron.errors import ConfigError, ValidationError

DEFAULT_CONFIG_PATH = "/etc/picron/picron.toml"
_NODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_KEYS = {"database": str, "node": str, "nodes": list, "timezone": str, "listen": str,
         "task_timeout": int, "history_days": int, "allowed_hosts": list,
         "lease_seconds": int}
_FIELDS = ("database", "node", "nodes", "timezone", "listen", "task_timeout", "history_days",
           "allowed_hosts", "path", "lease_seconds")
# A run's lease (SPEC §2 rule 6, §3): renewed every quarter of it; shorter than this would
# let a busy database or a slow renewal look like a dead owner.
MIN_LEASE_SECONDS = 5


class Config(namedtuple("Config", _FIELDS,
                        defaults=(None, "127.0.0.1:8080", 3600, 30, (), None, 60))):
    """Resolved settings; every field after ``nodes`` has its SPEC §3 default.

    A named tuple, not a dataclass: every cron tick reads the configuration, and importing
    ``dataclasses`` alone costs about as much as starting Python. ``path`` is the config
    file read, if any.
    """

    __slots__ = ()

    @property
    def known_nodes(self) -> tuple[str, ...]:
        """The configured nodes, with the local node first if it was not listed."""
        return self.nodes if self.node in self.nodes else (self.node, *self.nodes)


def check_node(name: object, field_name: str = "node") -> str:
    """Return ``name`` if it is a valid node name (``[A-Za-z0-9._-]{1,64}``), else raise."""
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not _NODE_CHARS.issuperset(name):
        raise ValidationError(
            f"{field_name}: {name!r} is not a valid node name (1-64 of A-Z a-z 0-9 . _ -)",
            field=field_name)
    return name


def load_config(config_path: str | None = None, db_path: str | None = None,
                env: dict | None = None) -> Config:
    """Read the config file and environment and resolve everything (SPEC §3).

    ``config_path`` and ``db_path`` are the command-line values (None when not given).
    Raises ``ConfigError`` for an unreadable or invalid file or a bad environment value.
    """
    env = os.environ if env is None else env
    path = _config_file(config_path, env)
    values = _read_toml(path) if path is not None else {}
    node = env.get("PICRON_NODE") or values.get("node") or os.uname().nodename.split(".")[0]
    try:
        node = check_node(node)
        nodes = tuple(check_node(n, "nodes") for n in values.get("nodes", [node]))
    except ValidationError as error:
        raise ConfigError(f"config: {error.message}") from None
    timezone = values.get("timezone")
    if timezone is not None:
        from picron.schedule import get_zone

        try:
            get_zone(timezone)
        except ValidationError as error:
            raise ConfigError(f"config: {error.message}") from None
    for key in ("task_timeout", "history_days"):
        if key in values and values[key] <= 0:
            raise ConfigError(f"config: {key} must be a positive number of "
                              f"{'seconds' if key == 'task_timeout' else 'days'}")
    if values.get("lease_seconds", MIN_LEASE_SECONDS) < MIN_LEASE_SECONDS:
        raise ConfigError(f"config: lease_seconds in {path} must be at least "
                          f"{MIN_LEASE_SECONDS} (seconds)")
    return Config(
        database=db_path or env.get("PICRON_DB") or values.get("database") or _default_db(env),
        node=node,
        nodes=tuple(dict.fromkeys(nodes)),
        timezone=timezone,
        listen=values.get("listen", "127.0.0.1:8080"),
        task_timeout=values.get("task_timeout", 3600),
        history_days=values.get("history_days", 30),
        allowed_hosts=tuple(values.get("allowed_hosts", ())),
        path=path,
        lease_seconds=values.get("lease_seconds", 60),
    )


def _config_file(config_path: str | None, env) -> os.PathLike | None:
    name = config_path or env.get("PICRON_CONFIG")
    if not name:
        try:
            os.stat(DEFAULT_CONFIG_PATH)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError:
            pass  # there but not readable: reading it reports that clearly
        name = DEFAULT_CONFIG_PATH
    from pathlib import Path  # imported only when there is a file to read

    return Path(name)


def _read_toml(path: os.PathLike) -> dict:
    import tomllib

    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"config: cannot read {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config: {path} is not valid TOML: {error}") from None
    for key, value in values.items():
        expected = _KEYS.get(key)
        if expected is None:
            raise ConfigError(f"config: unknown key {key!r} in {path}")
        if not isinstance(value, expected) or isinstance(value, bool):
            raise ConfigError(f"config: {key} in {path} must be a {expected.__name__}")
        if expected is list and not all(isinstance(item, str) for item in value):
            raise ConfigError(f"config: {key} in {path} must be a list of strings")
    return values


def _default_db(env) -> str:
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "picron", "picron.db")
