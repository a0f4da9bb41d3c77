"""Task modules: the ``TaskModule`` base class, option schemas and module discovery.

A module is a ``TaskModule`` subclass with an ``identifier``, a ``description``, an
``options`` schema and a ``do(options) -> bool`` method (SPEC §5). Built-in modules are
the files of this package; third-party modules come from the entry-point group
``picron.modules``. Adding a module needs no change anywhere else.
"""
from __future__ import annotations

import logging
import pkgutil
import re
from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module
from typing import Callable, ClassVar, Iterator

from picron.errors import ValidationError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "picron.modules"
OPTION_TYPES = ("bool", "int", "str")
MAX_OPTION_BYTES = 4096
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Option:
    """One key of a module's option schema."""

    type: str
    description: str
    required: bool = False
    default: bool | int | str | None = None

    def to_json(self) -> dict:
        return {"type": self.type, "description": self.description,
                "required": self.required, "default": self.default}


@dataclass
class TaskContext:
    """What a running module may use: its node, the database, the clock, a logger.

    ``location`` is the picron database's (a path or a PostgreSQL URL); a module reaches
    the database only through ``store()``.
    """

    node: str
    location: str
    now: Callable[[], datetime]
    timeout: int
    task_name: str = ""
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("picron.task"))

    def store(self):
        """A ``Store`` on the picron database, opened for this run: use it as a context
        manager (``with self.context.store() as store:``) or close it when done."""
        from picron.storage import open_store

        return open_store(self.location)


class TaskModule:
    """Base class of every task module.

    Subclasses set ``identifier`` (lowercase), ``description`` and ``options`` and
    implement ``do(options)``, which receives the options converted to their schema
    types with defaults filled in, and returns True for success. Anything the module
    wants in the run's message goes through ``self.say(text)``.
    """

    identifier: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}

    def __init__(self, context: TaskContext) -> None:
        self.context = context
        self.output: list[str] = []

    def say(self, text: str) -> None:
        """Add a line to the run's message (shown in the history)."""
        self.output.append(text)

    def do(self, options: dict) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Checks beyond the schema (ranges, URL schemes): raise ``ValidationError``.

        Receives the typed options with defaults filled in. Called when a task is saved
        and again before each run, so options stored by an older version fail clearly.
        """

    @classmethod
    def to_json(cls) -> dict:
        return {"identifier": cls.identifier, "description": cls.description,
                "options": {name: option.to_json() for name, option in cls.options.items()}}

    @classmethod
    def validate_options(cls, values: object) -> dict[str, str]:
        """Check raw option values against the schema; return them as stored strings.

        Values may be strings, numbers or booleans (as JSON gives them); booleans are
        normalised to ``"true"``/``"false"``. Raises ``ValidationError`` naming the option.
        """
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ValidationError("options: must be an object of key/value pairs",
                                  field="options")
        stored: dict[str, str] = {}
        for key, value in values.items():
            option = cls.options.get(key)
            if option is None:
                known = ", ".join(sorted(cls.options)) or "none"
                raise ValidationError(f"options: unknown option {key!r} for module "
                                      f"{cls.identifier} (known: {known})", field="options")
            stored[key] = _normalise(key, option, value)
        cls._complete(stored)
        return stored

    @classmethod
    def typed_options(cls, stored: dict[str, str]) -> dict:
        """Stored strings converted to schema types, with defaults for missing keys.

        The values are checked again (they may predate a stricter version of the
        module); raises ``ValidationError`` naming the option. Unknown keys are ignored.
        """
        return cls._complete({key: _normalise(key, cls.options[key], value)
                              for key, value in stored.items() if key in cls.options})

    @classmethod
    def _complete(cls, stored: dict[str, str]) -> dict:
        # required keys present, then typed with defaults, then the module's own checks
        for key, option in cls.options.items():
            if option.required and key not in stored:
                raise ValidationError(f"options: module {cls.identifier} requires option "
                                      f"{key!r}", field="options")
        values = {key: option.default for key, option in cls.options.items()}
        for key, text in stored.items():
            values[key] = _convert(cls.options[key].type, text)
        cls.check_options(values)
        return values


def _normalise(key: str, option: Option, value: object) -> str:
    where = f"options: {key!r}"
    if isinstance(value, (dict, list)) or value is None:
        raise ValidationError(f"{where} must be a {option.type}, not {type(value).__name__}",
                              field="options")
    if option.type == "bool":
        text = str(value).strip().lower()
        if text in _TRUE:
            return "true"
        if text in _FALSE:
            return "false"
        raise ValidationError(f"{where} must be true or false", field="options")
    if option.type == "int":
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValidationError(f"{where} must be an integer", field="options")
        text = str(int(value)) if isinstance(value, float) else str(value).strip()
        if not re.fullmatch(r"-?[0-9]{1,18}", text):
            raise ValidationError(f"{where} must be an integer", field="options")
        return str(int(text))
    if isinstance(value, bool):
        value = str(value).lower()
    text = str(value)
    if len(text.encode("utf-8", "replace")) > MAX_OPTION_BYTES:
        raise ValidationError(f"{where} is longer than {MAX_OPTION_BYTES} bytes",
                              field="options")
    if "\x00" in text:
        raise ValidationError(f"{where} must not contain NUL characters", field="options")
    return text


def _convert(kind: str, text: str):
    if kind == "bool":
        return text == "true"
    if kind == "int":
        return int(text)
    return text


class Registry:
    """The installed task modules by identifier, discovered on first use.

    Discovery is lazy so that a cron tick with nothing due never imports a module.
    ``problems`` lists the third-party modules that were skipped, one line each.
    """

    def __init__(self, discover: Callable[[], Iterator[type[TaskModule]]] | None = None,
                 modules: dict[str, type[TaskModule]] | None = None) -> None:
        self._discover = discover
        self._modules = dict(modules) if modules is not None else None
        self.problems: list[str] = []
        self.skipped: dict[str, str] = {}

    @property
    def modules(self) -> dict[str, type[TaskModule]]:
        if self._modules is None:
            found = {module.identifier: module
                     for module in (self._discover() if self._discover else ())}
            self._modules = found
        return self._modules

    def get(self, identifier: str) -> type[TaskModule]:
        """The module for ``identifier`` (any case); raises ``ValidationError``.

        If a third-party module of that name failed to load, the message says why.
        """
        key = identifier.lower() if isinstance(identifier, str) else None
        module = self.modules.get(key) if key else None
        if module is None:
            why = f" ({self.skipped[key]})" if key in self.skipped else ""
            raise ValidationError(f"taskmodule: unknown task module {identifier!r}{why}",
                                  field="taskmodule")
        return module

    def skip(self, name: str, reason: str) -> None:
        """Record (and log) a third-party module that could not be used."""
        self.skipped[name.lower()] = reason
        self.problems.append(f"task module {name!r} skipped: {reason}")
        logger.warning("%s", self.problems[-1])

    def __iter__(self) -> Iterator[type[TaskModule]]:
        return iter(sorted(self.modules.values(), key=lambda m: m.identifier))


def load_modules() -> Registry:
    """The registry of built-in and entry-point modules (discovered on first use).

    A built-in module that fails to import, or two built-ins with one identifier, are
    bugs and raise. A third-party module that fails to import, is malformed or takes
    an identifier already in use is logged, listed in ``Registry.problems`` and skipped.
    """
    registry = Registry()
    registry._discover = lambda: _discover_all(registry)
    return registry


def _discover_all(registry: Registry) -> Iterator[type[TaskModule]]:
    seen: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__):
        module = import_module(f"{__name__}.{info.name}")
        for cls in _module_classes(module):
            if cls.identifier in seen:
                raise RuntimeError(f"two built-in task modules named {cls.identifier!r}")
            seen[cls.identifier] = f"built-in module {cls.identifier}"
            yield cls
    yield from _discover_entry_points(seen, registry)


def _discover_entry_points(seen: dict[str, str], registry: Registry):
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            check_module_class(cls)
        except (Exception, SystemExit) as error:  # a broken package must not stop picron
            registry.skip(entry.name, f"{entry.value} cannot be loaded: "
                                      f"{type(error).__name__}: {error}")
            continue
        if cls.identifier in seen:
            registry.skip(entry.name, f"{entry.value}: identifier {cls.identifier!r} is "
                                      f"already taken by {seen[cls.identifier]}")
            continue
        seen[cls.identifier] = entry.value
        yield cls


def _module_classes(module) -> Iterator[type[TaskModule]]:
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, TaskModule) and value is not TaskModule
                and value.__module__ == module.__name__):
            check_module_class(value)
            yield value


_PYTHON_TYPES = {"bool": bool, "int": int, "str": str}


def check_module_class(cls: object) -> None:
    """Raise ``TypeError`` unless ``cls`` is a well-formed ``TaskModule`` subclass."""
    if not (isinstance(cls, type) and issubclass(cls, TaskModule)):
        raise TypeError("not a picron.modules.TaskModule subclass")
    if not isinstance(cls.identifier, str) or not _IDENTIFIER.fullmatch(cls.identifier):
        raise TypeError(f"bad identifier {cls.identifier!r} (1-64 lowercase letters, digits "
                        "and _, starting with a letter)")
    if not isinstance(cls.description, str) or not isinstance(cls.options, dict):
        raise TypeError("description must be a str and options a dict")
    for name, option in cls.options.items():
        if not isinstance(option, Option) or option.type not in OPTION_TYPES:
            raise TypeError(f"option {name!r} needs an Option of type bool, int or str")
        python_type = _PYTHON_TYPES[option.type]
        if option.default is not None and (type(option.default) is not python_type):
            raise TypeError(f"option {name!r}: default {option.default!r} is not a "
                            f"{option.type}")


__all__ = ["Option", "TaskContext", "TaskModule", "Registry", "load_modules",
           "check_module_class"]
