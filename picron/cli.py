"""The ``picron`` command line (SPEC §4): ``main(argv)``, and errors as exit codes.

The parser lives in ``picron.arguments`` and the commands in ``picron.commands``. A plain
cron tick (``run_scheduled -c``) is read without the parser and first takes a cheap look
at the database (``picron.storage.tick_is_idle``): most ticks find nothing to do and end there.
"""
from __future__ import annotations

import os
import sys
from types import SimpleNamespace

from picron.errors import PicronError, ValidationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
_SYSLOG = "/dev/log"


def main(argv: list[str] | None = None) -> int:
    """Run the picron command line; returns the exit code (SPEC §4).

    0 success, 1 a task failed, 2 invalid usage or input, 3 database or config unusable.
    Errors are one line on stderr; ``--debug`` adds the traceback.
    """
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = _parse_tick(argv)
        if args is not None and args.cron and _idle(args):
            return EXIT_OK
        if args is None:
            parser = build_parser()
            args = parser.parse_args(argv)
            if getattr(args, "func", None) is None:  # no command: the overview (SPEC §4)
                print(parser.format_help(), end="", file=sys.stderr)
                return EXIT_USAGE
        if args.command != "serve" or debug:  # the server sets up its own log
            _configure_logging(debug, cron=getattr(args, "cron", False))
        from picron.app import App
        from picron.config import load_config

        app = App(load_config(getattr(args, "config", None), getattr(args, "db", None)))
        return args.func(args, app)
    except PicronError as error:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"picron: error: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("picron: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as error:  # a bug: still one line for the user, details with --debug
        if debug:
            raise
        print(f"picron: error: internal error ({type(error).__name__}: {error}); "
              "run again with --debug for details", file=sys.stderr)
        # A tick that could not complete is exit 3: cron and monitoring read run_scheduled's
        # exit 1 as "a task failed".
        return EXIT_ENVIRONMENT if any(word in _TICK_COMMANDS for word in argv) else EXIT_FAILED


def build_parser():
    """The full argument parser (``picron.arguments``)."""
    from picron.arguments import build_parser as build

    return build()


def _idle(args: SimpleNamespace) -> bool:
    """True when a quiet tick found nothing to do (and recorded itself)."""
    from picron.config import load_config
    from picron.storage import tick_is_idle

    config = load_config(getattr(args, "config", None), getattr(args, "db", None))
    return tick_is_idle(config.database, args.node or config.node)


# The cron line runs every few minutes on every node, so reading it must cost less than the
# tick: _parse_tick reads its plain forms by hand, without building ~30 subparsers. Anything
# else (--help, --dryrun, an abbreviation, a doubtful value) goes to the full parser, so the
# result and every message are the same as argparse's.
_TICK_COMMANDS = ("run_scheduled", "run-scheduled")
_TICK_VALUES = {"--db": "db", "--config": "config", "-n": "node", "--node": "node"}


def _parse_tick(argv: list[str]) -> SimpleNamespace | None:
    """``[--db P] [--config F] run_scheduled [-c] [-n N]`` as argparse reads it, else None."""
    values: dict = {}
    command = None
    tokens = iter(argv)
    for token in tokens:
        if command is None and token in _TICK_COMMANDS:
            command = token
        elif token == "--debug":
            values["debug"] = True
        elif command and token in ("-c", "--cron"):
            values["cron"] = True
        elif token in _TICK_VALUES and (command or token in ("--db", "--config")):
            value = next(tokens, None)
            if value is None or value.startswith("-"):
                return None
            values[_TICK_VALUES[token]] = value
        else:
            return None
    if command is None or not _valid_node(values.get("node")):
        return None
    from picron.commands import cmd_run_scheduled

    return SimpleNamespace(**{"command": command, "cron": False, "dryrun": False,
                              "at": None, "node": None, **values, "func": cmd_run_scheduled})


def _valid_node(name: str | None) -> bool:
    from picron.config import check_node

    try:
        return name is None or check_node(name) == name
    except ValidationError:
        return False


def _configure_logging(debug: bool, cron: bool) -> None:
    """Give picron's log a handler, so that no record reaches logging's last resort.

    Without a handler, logging prints every warning bare on stderr ("lastResort"), so a
    module's warning (already in its run's message) was mailed by cron at every tick.
    Warnings go to stderr, except with ``-c``: then only errors do, and warnings go to
    syslog when there is one (the run's message has them anyway).
    """
    import logging

    root = logging.getLogger()
    if root.handlers:  # configured by whoever embeds picron (or by pytest)
        return
    stderr = logging.StreamHandler()
    stderr.setFormatter(logging.Formatter("picron: %(levelname)s: %(message)s"))
    stderr.setLevel(logging.DEBUG if debug else logging.ERROR if cron else logging.WARNING)
    root.addHandler(stderr)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    if cron and not debug and os.path.exists(_SYSLOG):
        from logging.handlers import SysLogHandler

        syslog = SysLogHandler(address=_SYSLOG, facility=SysLogHandler.LOG_CRON)
        syslog.setFormatter(logging.Formatter("picron[%(process)d]: %(message)s"))
        # A syslog that fails must not print "--- Logging error ---" into cron's mail:
        # the run's message has the warning anyway.
        syslog.handleError = lambda record: None
        root.addHandler(syslog)


# -- cron commands ---------------------------------------------------------------------
