"""The ``picron`` command line (SPEC §4): argument parsing, output, errors → exit codes.

Each ``cmd_*`` function takes the parsed arguments and the ``App`` and returns an exit
code; the work itself lives in the runner and the store.
"""
from __future__ import annotations

import argparse
import sys

from picron.errors import PicronError, TaskFailed, ValidationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3


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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_Parser)

    def command(name, help_text, func, aliases=()):
        sub = commands.add_parser(name, aliases=list(aliases), help=help_text,
                                  description=help_text, parents=[_global_options()])
        sub.set_defaults(func=func)
        return sub

    sub = command("run_scheduled", "run the tasks that are due on this node (for cron)",
                  cmd_run_scheduled, ["run-scheduled"])
    sub.add_argument("-c", "--cron", action="store_true",
                     help="quiet: print nothing on stdout, only errors on stderr")
    sub.add_argument("-d", "--dryrun", action="store_true",
                     help="show what would run, run nothing")
    sub.add_argument("--at", metavar="TIME",
                     help="with --dryrun: ask about another moment (ISO 8601; without an offset "
                          "it is read in the server time zone)")
    _node_option(sub, "the node to run as (default: the local node)")

    sub = command("list", "list all tasks in run order", cmd_list)
    sub.add_argument("--json", action="store_true", help="print a JSON array of task objects")
    _node_option(sub, "only tasks assigned to this node")

    sub = command("run_manually", "run one task now, even if inactive or not due",
                  cmd_run_manually, ["run-manually"])
    sub.add_argument("-t", "--task", required=True, metavar="NAME", help="the task's name")
    _node_option(sub, "the node to run it as (default: the local node)")

    _add_task_commands(command("task", "add, edit, show, delete, enable or disable a task",
                               None))

    sub = command("modules", "list the task modules and their options", cmd_modules)
    sub.add_argument("--json", action="store_true", help="print JSON")

    sub = command("next", "show the next due times of one or all tasks", cmd_next)
    sub.add_argument("name", nargs="?", metavar="NAME", help="a task's name (default: all)")
    _node_option(sub, "only this node (default: every node of each task)")
    sub.add_argument("--count", type=_positive_int, default=5, metavar="K",
                     help="how many due times (default 5)")

    sub = command("history", "show the run history, newest first", cmd_history)
    sub.add_argument("--task", metavar="NAME", help="only runs of this task")
    sub.add_argument("--limit", type=_positive_int, default=20, metavar="K",
                     help="how many runs (default 20)")
    sub.add_argument("--json", action="store_true", help="print a JSON array of run records")

    sub = command("counter", "read or change an event counter", cmd_counter)
    sub.add_argument("action", choices=["incr", "decr", "reset", "read"])
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--by", type=_positive_int, default=1, metavar="K",
                     help="amount for incr/decr (default 1)")

    _add_stats_commands(command("stats", "show or delete monitoring stats", None))

    sub = command("export", "write all task definitions as JSON", cmd_export)
    sub.add_argument("file", nargs="?", metavar="FILE", help="output file (default: stdout)")
    sub = command("import", "create or update tasks from a JSON export (all or nothing)",
                  cmd_import)
    sub.add_argument("file", metavar="FILE", help="a JSON array of task objects ('-' = stdin)")

    sub = command("serve", "serve the web page and JSON API", cmd_serve)
    sub.add_argument("--listen", metavar="HOST:PORT",
                     help="address to listen on (default: config listen, 127.0.0.1:8080)")
    sub.add_argument("--scheduler", action="store_true",
                     help="also run the due tasks once a minute (hosts without cron)")

    command("passwd", "set the web admin password (prompted, or read from stdin)", cmd_passwd)

    sub = command("check", "exit 1 if run_scheduled has not run here recently", cmd_check)
    sub.add_argument("--max-age", type=_positive_int, default=15, metavar="MINUTES",
                     help="how recent the last invocation must be (default 15)")

    sub = command("backup", "write a consistent copy of the database", cmd_backup)
    sub.add_argument("path", metavar="PATH", help="the backup file to write")
    return parser


def _add_task_commands(task: argparse.ArgumentParser) -> None:
    actions = task.add_subparsers(dest="action", metavar="ACTION", required=True,
                                  parser_class=_Parser)

    def action(name, help_text, func):
        sub = actions.add_parser(name, help=help_text, description=help_text,
                                 parents=[_global_options()])
        sub.set_defaults(func=func)
        return sub

    add = action("add", "define a new task (prints it as JSON)", cmd_task_add)
    _definition_options(add, required=True)
    edit = action("edit", "change the given fields of a task (prints it as JSON)", cmd_task_edit)
    edit.add_argument("name", metavar="NAME")
    edit.add_argument("--rename", metavar="NEW", help="a new name")
    _definition_options(edit, required=False)
    for name, help_text, func in (("show", "print a task as JSON", cmd_task_show),
                                  ("delete", "delete a task (its history is kept)",
                                   cmd_task_delete),
                                  ("enable", "make a task active", cmd_task_enable),
                                  ("disable", "make a task inactive", cmd_task_disable)):
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


def _add_stats_commands(stats: argparse.ArgumentParser) -> None:
    actions = stats.add_subparsers(dest="action", metavar="ACTION", required=True,
                                   parser_class=_Parser)
    for name, help_text in (("keys", "list the stats keys"),
                            ("show", "show the values of one key"),
                            ("delete", "delete all values of one key")):
        sub = actions.add_parser(name, help=help_text, description=help_text,
                                 parents=[_global_options()])
        sub.set_defaults(func=cmd_stats)
        if name != "keys":
            sub.add_argument("key", metavar="KEY")
        if name == "show":
            sub.add_argument("--json", action="store_true", help="print JSON")
            sub.add_argument("--start", metavar="TIME", help="from this time (ISO 8601)")
            sub.add_argument("--end", metavar="TIME", help="until this time (ISO 8601)")


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


def main(argv: list[str] | None = None) -> int:
    """Run the picron command line; returns the exit code (SPEC §4)."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = _parse_tick(argv) or build_parser().parse_args(argv)
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


# The cron line runs every few minutes on every node, so reading it must cost less than the
# tick: _parse_tick reads its plain forms by hand, without building ~30 subparsers. Anything
# else (--help, --dryrun, an abbreviation, a doubtful value) goes to the full parser, so the
# result and every message are the same as argparse's.
_TICK_COMMANDS = ("run_scheduled", "run-scheduled")
_TICK_VALUES = {"--db": "db", "--config": "config", "-n": "node", "--node": "node"}


def _parse_tick(argv: list[str]) -> argparse.Namespace | None:
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
    return argparse.Namespace(**{"command": command, "cron": False, "dryrun": False,
                                 "at": None, "node": None, **values,
                                 "func": cmd_run_scheduled})


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


def cmd_run_scheduled(args, app) -> int:
    if args.node:
        app.config = _with_node(app.config, args.node)
    if args.at and not args.dryrun:
        raise ValidationError("--at: only together with --dryrun", field="at")
    if args.dryrun:
        return _dry_run(args, app)
    runner = app.runner()
    quiet = args.cron
    report = runner.run_scheduled(
        on_start=None if quiet else lambda task: print(f"running {task.name} ...", flush=True),
        on_result=None if quiet else lambda result: print(_describe(result), flush=True))
    for warning in report.warnings:
        print(f"picron: warning: {warning}", file=sys.stderr)
    for result in report.results:
        if quiet and not result.ok:
            print(f"picron: {_describe(result)}", file=sys.stderr)
    if not quiet and not report.results:
        print(f"nothing due on node {runner.node}")
    return EXIT_FAILED if report.failed else EXIT_OK


def _describe(result) -> str:
    from picron.output import describe_result  # not imported by a tick that ran nothing

    return describe_result(result)


def _dry_run(args, app) -> int:
    from picron.output import format_time
    from picron.schedule import parse_instant

    at = parse_instant(args.at, app.zone) if args.at else app.clock()
    tasks = app.runner().due_tasks(at)
    if args.cron:
        return EXIT_OK
    when = format_time(at, app.zone)
    if not tasks:
        print(f"nothing would run on node {app.config.node} at {when}")
    for task in tasks:
        print(f"would run {task.name} ({task.taskmodule}), due since "
              f"{format_time(task.next_runs[app.config.node], app.zone)}")
    return EXIT_OK


def _with_node(config, node: str):
    from dataclasses import replace

    return replace(config, node=node)


def cmd_list(args, app) -> int:
    from picron.output import print_json, task_table

    tasks = app.store.list_tasks(args.node)
    if args.json:
        print_json([task.to_json() for task in tasks])
    else:
        print(task_table(tasks, args.node or app.config.node, app.zone))
    return EXIT_OK


def cmd_run_manually(args, app) -> int:
    from picron.output import describe_result

    task = app.store.find_task(args.task)
    result = app.runner().run_manually(task.id, args.node)
    print(describe_result(result))
    if not result.ok:
        raise TaskFailed(f"task {result.task!r} {result.status}")
    return EXIT_OK


# -- management commands ------------------------------------------------------------------


def _definition(args) -> dict:
    data = {}
    for attribute, key in (("interval", "interval"), ("module", "taskmodule"),
                           ("ordering", "ordering"), ("active", "active"),
                           ("retry_if_failed", "retry_if_failed")):
        if getattr(args, attribute, None) is not None:
            data[key] = getattr(args, attribute)
    for key in ("max_retries", "timezone", "timeout"):
        if hasattr(args, key):
            data[key] = getattr(args, key)
    if args.nodes is not None:
        data["nodes"] = args.nodes
    if args.option is not None:
        data["options"] = _parse_options(args.option)
    return data


def _parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"--option: {pair!r} is not KEY=VALUE", field="options")
        options[key.strip()] = value
    return options


def cmd_task_add(args, app) -> int:
    from picron.app import current_user
    from picron.output import print_json

    spec = app.parse_task({"name": args.name, **_definition(args)})
    task = app.store.add_task(spec, app.clock(), actor=f"cli:{current_user()}")
    print_json(task.to_json())
    return EXIT_OK


def cmd_task_edit(args, app) -> int:
    from picron.app import current_user
    from picron.output import print_json

    task = app.store.find_task(args.name)
    data = _definition(args)
    if args.rename is not None:
        data["name"] = args.rename
    spec = app.parse_task(data, base=task.spec)
    task = app.store.update_task(task.id, spec, app.clock(), actor=f"cli:{current_user()}")
    print_json(task.to_json())
    return EXIT_OK


def cmd_task_show(args, app) -> int:
    from picron.output import print_json

    print_json(app.store.find_task(args.name).to_json())
    return EXIT_OK


def cmd_task_delete(args, app) -> int:
    from picron.app import current_user

    task = app.store.find_task(args.name)
    app.store.delete_task(task.id, app.clock(), actor=f"cli:{current_user()}")
    print(f"deleted task {task.name!r}")
    return EXIT_OK


def cmd_task_enable(args, app) -> int:
    return _set_active(args, app, True)


def cmd_task_disable(args, app) -> int:
    return _set_active(args, app, False)


def _set_active(args, app, active: bool) -> int:
    from picron.app import current_user

    task = app.store.find_task(args.name)
    app.store.set_active(task.id, active, app.clock(), actor=f"cli:{current_user()}")
    print(f"task {task.name!r} is now {'active' if active else 'inactive'}")
    return EXIT_OK


def cmd_modules(args, app) -> int:
    from picron.output import module_table, print_json

    if args.json:
        print_json([module.to_json() for module in app.registry])
    else:
        print(module_table(app.registry))
    for problem in app.registry.problems:
        print(f"picron: warning: {problem}", file=sys.stderr)
    return EXIT_OK


def cmd_next(args, app) -> int:
    from picron.output import next_table

    tasks = [app.store.find_task(args.name)] if args.name else app.store.list_tasks(args.node)
    print(next_table(tasks, args.node, args.count, app.zone))
    return EXIT_OK


def cmd_history(args, app) -> int:
    from picron.output import print_json, run_table

    task_id = app.store.find_task(args.task).id if args.task else None
    runs = app.store.list_runs(task_id, args.limit)
    if args.json:
        print_json([run.to_json() for run in runs])
    else:
        print(run_table(runs, app.zone))
    return EXIT_OK


def cmd_counter(args, app) -> int:
    from picron.counters import change_counter, read_counter, reset_counter

    if args.action == "read":
        print(read_counter(app.store, args.name))
    elif args.action == "reset":
        reset_counter(app.store, args.name)
        print(0)
    else:
        print(change_counter(app.store, args.name, args.by if args.action == "incr" else -args.by))
    return EXIT_OK


def cmd_stats(args, app) -> int:
    from picron.output import format_time, print_json
    from picron.schedule import parse_instant, to_db

    if args.action == "keys":
        for key in app.store.stat_keys():
            print(key)
        return EXIT_OK
    if args.key not in app.store.stat_keys():
        raise ValidationError(f"stats: no stats under key {args.key!r}", field="key")
    if args.action == "delete":
        print(f"deleted {app.store.delete_stats(args.key)} values of {args.key!r}")
        return EXIT_OK
    start = parse_instant(args.start, app.zone, "start") if args.start else None
    end = parse_instant(args.end, app.zone, "end") if args.end else None
    series = app.store.get_stats(args.key, start, end)
    if args.json:
        print_json([[to_db(at), value] for at, value in series])
    else:
        for at, value in series:
            print(f"{format_time(at, app.zone)}  {value}")
    return EXIT_OK


def cmd_export(args, app) -> int:
    from picron.transfer import export_tasks

    text = export_tasks(app.store)
    if args.file:
        try:
            with open(args.file, "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as error:
            raise ValidationError(f"export: cannot write {args.file}: {error.strerror}",
                                  field="file") from None
        print(f"exported {len(app.store.list_tasks())} tasks to {args.file}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_import(args, app) -> int:
    from picron.app import current_user
    from picron.transfer import import_tasks

    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as file:
                text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ValidationError(f"import: cannot read {args.file}: {reason}", field="file") from None
    created, updated = import_tasks(app, text, actor=f"cli:{current_user()}")
    print(f"imported {created + updated} tasks ({created} created, {updated} updated)")
    return EXIT_OK


def cmd_serve(args, app) -> int:
    from picron.web import serve

    return serve(app, listen=args.listen, scheduler=args.scheduler)


def cmd_passwd(args, app) -> int:
    from picron.auth import read_new_password, set_password

    set_password(app.store, read_new_password())
    print("admin password set; the web page now requires a login")
    return EXIT_OK


def cmd_check(args, app) -> int:
    from picron.health import check_ticks

    ok, message = check_ticks(app.store, app.config.node, app.clock(), args.max_age)
    print(message, file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


def cmd_backup(args, app) -> int:
    from picron.db import backup_database

    backup_database(app.store.conn, args.path)
    print(f"backup written to {args.path}")
    return EXIT_OK
