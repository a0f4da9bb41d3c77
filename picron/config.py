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
# Notifications (SPEC §7): where down/up events go by default, and how mail is sent.
_NOTIFY_DEFAULTS = {"notify_url": None, "notify_email": None, "smtp_host": "localhost",
                    "mail_from": None}
_KEYS.update(dict.fromkeys(_NOTIFY_DEFAULTS, str))
_FIELDS += tuple(_NOTIFY_DEFAULTS)
# A run's lease (SPEC §2 rule 6, §3): renewed every quarter of it; shorter than this would
# let a busy database or a slow renewal look like a dead owner.
MIN_LEASE_SECONDS = 5


class Config(namedtuple("Config", _FIELDS,
                        defaults=(None, "127.0.0.1:8080", 3600, 30, (), None, 60,
                                  *_NOTIFY_DEFAULTS.values()))):
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
    if values.get("lease_seconds", MIN_LEASE_SECONDS) < MIN_LEASE_SECONDS:
        raise ConfigError(f"config: lease_seconds in {path} must be at least "
                          f"{MIN_LEASE_SECONDS} (seconds)")
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
        **_notify_settings(values, path),
        lease_seconds=values.get("lease_seconds", 60),
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


def _notify_settings(values: dict, path) -> dict:
    settings = {key: values.get(key, default) for key, default in _NOTIFY_DEFAULTS.items()}
    checks = {"notify_url": check_url, "notify_email": check_email, "mail_from": check_email,
              "smtp_host": smtp_address}
    for key, check in checks.items():
        if key in values:
            try:
                check(values[key], key)
            except ValidationError as error:
                raise ConfigError(f"config: {error.message} (in {path})") from None
    return settings


def check_url(value: object, field_name: str) -> str:
    """``value`` if it is an http(s) URL with a host, or ``""`` (none); else raise."""
    # Imported here: a cron tick reads the config, and usually needs no URL parsing.
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        raise ValidationError(f"{field_name}: must be a string", field=field_name)
    if value == "":
        return value
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
            or len(value) > 2048
            or any(ch.isspace() or not ch.isprintable() for ch in value)):
        raise ValidationError(f"{field_name}: {value!r} is not an http:// or https:// URL",
                              field=field_name)
    return value


_NOT_IN_ADDRESS = frozenset('@<>()[]\\,;:"')


def check_email(value: object, field_name: str) -> str:
    """``value`` if it is one plausible e-mail address (``user@domain``), or ``""``; else raise."""
    if not isinstance(value, str):
        raise ValidationError(f"{field_name}: must be a string", field=field_name)
    if value == "":
        return value
    local, at, domain = value.rpartition("@")
    if (not at or not local or len(value) > 254 or len(local) > 64
            or any(ch.isspace() or not ch.isprintable() or ch in _NOT_IN_ADDRESS for ch in local)
            or not all(label and all(ch.isalnum() or ch == "-" for ch in label)
                       for label in domain.split("."))):
        raise ValidationError(f"{field_name}: {value!r} is not an e-mail address "
                              "(user@example.org)", field=field_name)
    return value


def smtp_address(value: object, field_name: str = "smtp_host") -> tuple[str, int]:
    """``host[:port]`` (``[IPv6]:port`` too) as (host, port); the port defaults to 25."""
    host, port = value, "25"
    if isinstance(value, str) and value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if rest else "25")
    elif isinstance(value, str) and value.count(":") == 1:
        host, _, port = value.partition(":")
    if (not isinstance(host, str) or not host or not port.isascii() or not port.isdigit()
            or not 0 < int(port) <= 65535
            or not all(ch.isalnum() or ch in ".-_:" for ch in host)):
        raise ValidationError(f"{field_name}: {value!r} is not host[:port] "
                              "(for example localhost or mail.example.org:587)",
                              field=field_name)
    return host, int(port)
