"""The ``picron`` argument parser (SPEC §4): every command, option and help text.

Built only when a command line needs it: a plain cron tick is read without it (see
``picron.cli``), since importing argparse and building ~30 parsers costs more than the tick.
"""
from __future__ import annotations

import argparse

from picron import commands
from picron.errors import ValidationError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit 2), not a usage block."""

    def error(self, message: str):
        # argparse quotes no values: a "\n" argument would break the one line
        raise ValidationError("".join(ch if ch.isprintable() else
                                      ch.encode("unicode_escape").decode() for ch in message))


def _global_options() -> argparse.ArgumentParser:
    # A fresh parent per parser: SUPPRESS keeps a value given before the command from
    # being reset by the subparser's default (argparse shares no state this way).
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options")
    group.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                       help="database file (default: $PICRON_DB, config, "
                            "~/.local/share/picron/picron.db)")
    group.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="TOML config file (default: $PICRON_CONFIG, /etc/picron/picron.toml)")
    group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks and debug logging")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="picron", parents=[_global_options()],
                     description="Periodic tasks for small deployments. The system cron calls "
                                 "'picron run_scheduled -c'; define tasks here or on the web page.",
                     epilog="Exit codes: 0 ok, 1 a task failed, 2 invalid usage or input, "
                            "3 database or config unusable.")
    parser.add_argument("--version", action=_VersionAction, help="print picron's version and exit")
    # Not required: without a command, main() prints this overview (SPEC §4).
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=_Parser)

    def command(name, help_text, func, aliases=()):
        sub = subcommands.add_parser(name, aliases=list(aliases), help=help_text,
                                  description=help_text, parents=[_global_options()])
        sub.set_defaults(func=func)
        return sub

    sub = command("run_scheduled", "run the tasks that are due on this node (for cron)",
                  commands.cmd_run_scheduled, ["run-scheduled"])
    sub.add_argument("-c", "--cron", action="store_true",
                     help="quiet: print nothing on stdout, only errors on stderr")
    sub.add_argument("-d", "--dryrun", action="store_true",
                     help="show what would run, run nothing")
    sub.add_argument("--at", metavar="TIME",
                     help="with --dryrun: ask about another moment (ISO 8601; without an offset "
                          "it is read in the server time zone)")
    _node_option(sub, "the node to run as (default: the local node)")

    sub = command("list", "list all tasks in run order", commands.cmd_list)
    sub.add_argument("--json", action="store_true", help="print a JSON array of task objects")
    _node_option(sub, "only tasks assigned to this node")
    _utc_option(sub)

    sub = command("run_manually", "run one task now, even if inactive or not due",
                  commands.cmd_run_manually, ["run-manually"])
    sub.add_argument("-t", "--task", required=True, metavar="NAME", help="the task's name")
    _node_option(sub, "the node to run it as (default: the local node)")

    _add_task_commands(command("task", "add, edit, show, delete, enable or disable a task",
                               None))

    sub = command("modules", "list the task modules and their options", commands.cmd_modules)
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = command("next", "show the next due times of one or all tasks", commands.cmd_next)
    sub.add_argument("name", nargs="?", metavar="NAME", help="a task's name (default: all)")
    _node_option(sub, "only this node (default: every node of each task)")
    sub.add_argument("--count", type=_positive_int, default=5, metavar="K",
                     help="how many due times (default 5)")
    _utc_option(sub)

    sub = command("history", "show the run history, newest first", commands.cmd_history)
    sub.add_argument("--task", metavar="NAME",
                     help="only runs of this task (also of a deleted one, by its name)")
    sub.add_argument("--limit", type=_positive_int, default=20, metavar="K",
                     help="how many runs (default 20)")
    sub.add_argument("--json", action="store_true", help="print a JSON array of run records")

    sub = command("events", "show the down/up notification events, newest first",
                  commands.cmd_events)
    sub.add_argument("--limit", type=_positive_int, default=20, metavar="K",
                     help="how many events (default 20)")
    sub.add_argument("--json", action="store_true", help="print a JSON array of events")

    sub = command("counter", "read or change an event counter", commands.cmd_counter)
    sub.add_argument("action", choices=["incr", "decr", "reset", "read"])
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--by", type=_positive_int, default=1, metavar="K",
                     help="amount for incr/decr (default 1)")

    _add_stats_commands(command("stats", "show or delete monitoring stats", None))

    sub = command("export", "write all task definitions as JSON", commands.cmd_export)
    sub.add_argument("file", nargs="?", metavar="FILE", help="output file (default: stdout)")
    sub.add_argument("--secrets", action="store_true",
                     help="include secret option values (masked otherwise)")
    sub = command("import", "create or update tasks from a JSON export (all or nothing)",
                  commands.cmd_import)
    sub.add_argument("file", metavar="FILE",
                     help="a JSON array of task objects, or privacyIDEA's GET /periodictask/ "
                          "answer or config export ('-' = stdin)")

    sub = command("serve", "serve the web page and JSON API", commands.cmd_serve)
    sub.add_argument("--listen", metavar="HOST:PORT",
                     help="address to listen on (default: config listen, 127.0.0.1:8080)")
    sub.add_argument("--scheduler", action="store_true",
                     help="also run the due tasks once a minute (hosts without cron)")

    sub = command("passwd", "set the web admin password (prompted, or read from stdin)",
                  commands.cmd_passwd)
    sub.add_argument("--remove", action="store_true",
                     help="remove the password (the server then listens only on loopback)")

    sub = command("token", "print the web API token (created on first use)", commands.cmd_token)
    sub.add_argument("--new", action="store_true",
                     help="replace the token; the old one stops working at once")

    sub = command("check", "exit 1 if run_scheduled has not run here recently", commands.cmd_check)
    sub.add_argument("--max-age", type=_positive_int, default=15, metavar="MINUTES",
                     help="how recent the last invocation must be (default 15)")
    sub.add_argument("--tasks", action="store_true",
                     help="also exit 1, naming them, when active tasks of this node are "
                          "failing (their newest finished run here failed)")

    command("doctor", "show which config, database and node picron uses here, and why",
            commands.cmd_doctor)

    sub = command("backup", "write a consistent copy of the database", commands.cmd_backup)
    sub.add_argument("path", metavar="PATH",
                     help="the backup file to write (not the live database)")
    sub.add_argument("--force", action="store_true", help="replace PATH if it exists")

    sub = command("completion", "print a shell completion script, made from this parser",
                  commands.cmd_completion)
    sub.add_argument("shell", choices=["bash"],
                     help="the shell (for bash: picron completion bash "
                          "> /etc/bash_completion.d/picron)")

    sub = command("copy-db", "copy everything into another, empty database (SQLite or "
                  "PostgreSQL)", commands.cmd_copy_db)
    sub.add_argument("target", metavar="TARGET",
                     help="a SQLite path (new or empty) or a postgresql:// URL")
    return parser


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (importlib.metadata costs ~50 ms)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"picron {version()}")
        parser.exit()


def version() -> str:
    """picron's version: the installed distribution's, else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version as installed_version

    try:
        return installed_version("picron")
    except PackageNotFoundError:  # run from a checkout (PYTHONPATH), not installed
        from picron import __version__

        return __version__


def _add_task_commands(task: argparse.ArgumentParser) -> None:
    actions = task.add_subparsers(dest="action", metavar="ACTION", required=True,
                                  parser_class=_Parser)

    def action(name, help_text, func):
        sub = actions.add_parser(name, help=help_text, description=help_text,
                                 parents=[_global_options()])
        sub.set_defaults(func=func)
        return sub

    add = action("add", "define a new task (prints it as JSON)", commands.cmd_task_add)
    _definition_options(add, required=True)
    edit = action("edit", "change the given fields of a task (prints it as JSON)", commands.cmd_task_edit)
    edit.add_argument("name", metavar="NAME")
    edit.add_argument("--rename", metavar="NEW", help="a new name")
    _definition_options(edit, required=False)
    for name, help_text, func in (("show", "print a task as JSON", commands.cmd_task_show),
                                  ("delete", "delete a task (its history is kept)",
                                   commands.cmd_task_delete),
                                  ("enable", "make a task active", commands.cmd_task_enable),
                                  ("disable", "make a task inactive", commands.cmd_task_disable)):
        action(name, help_text, func).add_argument("name", metavar="NAME")


def _definition_options(sub: argparse.ArgumentParser, required: bool) -> None:
    if required:
        sub.add_argument("--name", required=True, help="unique name, 1-64 characters")
    sub.add_argument("--interval", required=required, metavar="EXPR",
                     help="crontab expression ('*/30 * * * *') or @hourly, @daily, ...")
    sub.add_argument("--module", required=required, metavar="M",
                     help="task module (see 'picron modules')")
    sub.add_argument("--nodes", metavar="a,b", help="comma-separated nodes (default: local node)")
    sub.add_argument("--ordering", type=int, metavar="K", help="run order, lower first (>= 0)")
    sub.add_argument("--option", action="append", metavar="KEY=VALUE",
                     help="a module option; repeat for more (on edit: replaces all options)")
    sub.add_argument("--inactive", dest="active", action="store_false", default=None,
                     help="define it inactive")
    if not required:
        sub.add_argument("--active", dest="active", action="store_true",
                         help="make it active")
        sub.add_argument("--retry", dest="retry_if_failed", action="store_true", default=None,
                         help="retry a failed run at the next invocation")
    sub.add_argument("--no-retry", dest="retry_if_failed", action="store_false",
                     default=None, help="a failed run counts as a run (no retry)")
    sub.add_argument("--max-retries", metavar="K", type=_int_or_none,
                     default=argparse.SUPPRESS,
                     help="failed retries in a row before the failure counts ('none': no limit)")
    sub.add_argument("--timezone", metavar="TZ", type=_str_or_none, default=argparse.SUPPRESS,
                     help="IANA time zone of the interval ('none': server time zone)")
    sub.add_argument("--timeout", metavar="S", type=_int_or_none, default=argparse.SUPPRESS,
                     help="seconds before a run is stopped ('none': config task_timeout)")
    sub.add_argument("--notify-url", metavar="URL", type=_none_or_text, default=argparse.SUPPRESS,
                     help="webhook for the task's down/up events ('': none, "
                          "'none': config notify_url)")
    sub.add_argument("--notify-email", metavar="ADDR", type=_none_or_text,
                     default=argparse.SUPPRESS,
                     help="address for the task's down/up mails ('': none, "
                          "'none': config notify_email)")


def _add_stats_commands(stats: argparse.ArgumentParser) -> None:
    actions = stats.add_subparsers(dest="action", metavar="ACTION", required=True,
                                   parser_class=_Parser)
    for name, help_text in (("keys", "list the stats keys"),
                            ("show", "show the values of one key"),
                            ("delete", "delete all values of one key")):
        sub = actions.add_parser(name, help=help_text, description=help_text,
                                 parents=[_global_options()])
        sub.set_defaults(func=commands.cmd_stats)
        if name != "keys":
            sub.add_argument("key", metavar="KEY")
        if name == "show":
            sub.add_argument("--json", action="store_true", help="print JSON")
            sub.add_argument("--start", metavar="TIME", help="from this time (ISO 8601)")
            sub.add_argument("--end", metavar="TIME", help="until this time (ISO 8601)")


def _utc_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--utc", action="store_true",
                     help="show times in UTC (default: each task's time zone, named)")


def _node_option(sub: argparse.ArgumentParser, help_text: str) -> None:
    from picron.config import check_node

    def node(value: str) -> str:
        try:
            return check_node(value)
        except ValidationError as error:
            raise argparse.ArgumentTypeError(error.message) from None
    sub.add_argument("-n", "--node", type=node, help=help_text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _int_or_none(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number or 'none'") from None


def _str_or_none(text: str) -> str | None:
    return None if text.lower() in ("none", "") else text


def _none_or_text(text: str) -> str | None:
    """'none' is null (the config's destination); anything else, "" included, is the value."""
    return None if text.lower() == "none" else text
