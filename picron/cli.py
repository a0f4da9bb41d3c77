"""The ``picron`` command line (SPEC §4): ``main(argv)``, and errors as exit codes.

The parser lives in ``picron.arguments`` and the commands in ``picron.commands``. A plain
cron tick (``run_scheduled -c``) is read without the parser and first takes a cheap look
at the database (``picron.storage.tick_is_idle``): most ticks find nothing to do and end there.
"""
from __future__ import annotations

import sys
from types import SimpleNamespace

from picron.errors import PicronError, ValidationError

EXIT_OK, EXIT_FAILED = 0, 1


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
        args = args or build_parser().parse_args(argv)
        _configure_logging(debug)
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
        return EXIT_FAILED


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


def _configure_logging(debug: bool) -> None:
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="picron: %(levelname)s: %(message)s")


# -- cron commands ---------------------------------------------------------------------
