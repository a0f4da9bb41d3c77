"""Configuration (SPEC §3): the TOML file, the database location and the local node name."""
from __future__ import annotations

import os
from collections import namedtuple

from picron.errors import ConfigError, ValidationError

DEFAULT_CONFIG_PATH = "/etc/picron/picron.toml"
_NODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_KEYS = {"database": str, "node": str, "nodes": list, "timezone": str, "listen": str,
         "task_timeout": int, "history_days": int, "allowed_hosts": list}
_FIELDS = ("database", "node", "nodes", "timezone", "listen", "task_timeout", "history_days",
           "allowed_hosts", "path")


class Config(namedtuple("Config", _FIELDS,
                        defaults=(None, "127.0.0.1:8080", 3600, 30, (), None))):
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
    return explain_config(config_path, db_path, env)[0]


def explain_config(config_path: str | None = None, db_path: str | None = None,
                   env: dict | None = None) -> tuple[Config, dict[str, str]]:
    """``load_config``, and why: where the config file, database and node came from.

    The reasons (``{"config": ..., "database": ..., "node": ...}``) name the option,
    variable, file key or default that won, for ``picron doctor``. Raises ``ConfigError``.
    """
    env = os.environ if env is None else env
    path, why_config = _config_file(config_path, env)
    values = _read_toml(path) if path is not None else {}
    node, why_node = _first((env.get("PICRON_NODE"), "environment variable PICRON_NODE"),
                            (values.get("node"), f"node in {path}"),
                            (os.uname().nodename.split(".")[0], "the short host name"))
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
    in_file, why_file = values.get("database"), f"database in {path}"
    if in_file and _is_file(in_file) and _resolve(in_file, path) != in_file:
        how = "~ expanded" if in_file.startswith("~") else "relative to that file's directory"
        in_file, why_file = _resolve(in_file, path), f"{why_file} ({in_file!r}, {how})"
    database, why_database = _first(
        (db_path, "option --db"), (env.get("PICRON_DB"), "environment variable PICRON_DB"),
        (in_file, why_file),
        (_default_db(env), "the default ($XDG_DATA_HOME/picron/picron.db, else "
                           "~/.local/share/picron/picron.db of this user)"))
    if _is_file(database):
        database = os.path.expanduser(database)
    config = Config(
        database=database,
        node=node,
        nodes=tuple(dict.fromkeys(nodes)),
        timezone=timezone,
        listen=values.get("listen", "127.0.0.1:8080"),
        task_timeout=values.get("task_timeout", 3600),
        history_days=values.get("history_days", 30),
        allowed_hosts=tuple(values.get("allowed_hosts", ())),
        path=path,
    )
    return config, {"config": why_config, "database": why_database, "node": why_node}


def _first(*candidates: tuple[object, str]) -> tuple:
    """The first (value, reason) whose value is set: SPEC §3's "first that is set"."""
    return next((value, why) for value, why in candidates if value)


def _config_file(config_path: str | None, env) -> tuple[os.PathLike | None, str]:
    if config_path:
        name, why = config_path, "option --config"
    elif env.get("PICRON_CONFIG"):
        name, why = env["PICRON_CONFIG"], "environment variable PICRON_CONFIG"
    else:
        try:
            os.stat(DEFAULT_CONFIG_PATH)
        except (FileNotFoundError, NotADirectoryError):
            return None, (f"none: no --config, no PICRON_CONFIG, and {DEFAULT_CONFIG_PATH} "
                          "does not exist")
        except OSError:
            pass  # there but not readable: reading it reports that clearly
        name, why = DEFAULT_CONFIG_PATH, "the default file, which exists"
    from pathlib import Path  # imported only when there is a file to read

    return Path(name), why


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


def _is_file(database: str) -> bool:
    """Whether a database location names a SQLite file (not ":memory:", not a URL)."""
    return database != ":memory:" and "://" not in database


def _resolve(database: str, config_file: os.PathLike) -> str:
    """A file's ``database`` as SPEC §3 reads it: ``~`` expanded, and a relative path
    relative to the config file's directory (cron's working directory is not a shell's)."""
    database = os.path.expanduser(database)
    return os.path.join(os.path.dirname(os.path.abspath(config_file)), database)


def _default_db(env) -> str:
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "picron", "picron.db")
