"""The ``picron`` commands: each ``cmd_*`` takes the parsed arguments and the ``App``.

Each returns an exit code (or raises a ``PicronError``); the work itself lives in the
runner and the store, and heavy modules are imported only by the command that needs them.
"""
from __future__ import annotations

import os
import sys

from picron.errors import TaskFailed, ValidationError

EXIT_OK, EXIT_FAILED = 0, 1


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
    return config._replace(node=node)


def cmd_list(args, app) -> int:
    from picron.output import print_json_array, task_table

    if args.json:
        from picron.tasks import masked_json_texts

        print_json_array(masked_json_texts(app.store.list_tasks_json(args.node), app.registry))
        return EXIT_OK
    print(task_table(app.store.list_tasks(args.node), args.node or app.config.node, app.zone,
                     app.registry, args.utc))
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
    for key in ("max_retries", "timezone", "timeout", "notify_url", "notify_email"):
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

    from picron.tasks import task_json

    spec = app.parse_task({"name": args.name, **_definition(args)})
    task = app.store.add_task(spec, app.clock(), actor=f"cli:{current_user()}")
    print_json(task_json(task, app.registry))
    return EXIT_OK


def cmd_task_edit(args, app) -> int:
    from picron.app import current_user
    from picron.output import print_json

    from picron.tasks import task_json

    task = app.store.find_task(args.name)
    data = _definition(args)
    if args.rename is not None:
        data["name"] = args.rename
    task = app.store.edit_task(task.id, lambda base: app.parse_task(data, base=base),
                               app.clock(), actor=f"cli:{current_user()}")
    print_json(task_json(task, app.registry))
    return EXIT_OK


def cmd_task_show(args, app) -> int:
    from picron.output import print_json

    from picron.tasks import task_json

    print_json(task_json(app.store.find_task(args.name), app.registry))
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
    print(next_table(tasks, args.node, args.count, app.zone, args.utc))
    return EXIT_OK


def cmd_events(args, app) -> int:
    from picron.output import format_time, print_json, table

    events = app.store.list_events(args.limit)
    if args.json:
        print_json([event.to_json() for event in events])
    elif not events:
        print("no events recorded (a task's first failure on a node is one)")
    else:
        print(table(["time", "event", "task", "node", "streak", "run", "delivered", "detail"],
                    [[format_time(e.at, app.zone), e.event, e.task_name, e.node,
                      e.failure_streak, e.run_id or "-", "yes" if e.delivered else "no",
                      e.detail or "-"] for e in events]))
    return EXIT_OK


def cmd_history(args, app) -> int:
    from picron.output import print_json, run_table

    runs = _task_runs(app, args.task, args.limit) if args.task else \
        app.store.list_runs(None, args.limit)
    if args.json:
        print_json([run.to_json() for run in runs])
    else:
        print(run_table(runs, app.zone))
    return EXIT_OK


def _task_runs(app, name: str, limit: int) -> list:
    """The runs of task ``name``; of a deleted task, the runs kept under its name."""
    from picron.errors import NotFound

    try:
        return app.store.list_runs(app.store.find_task(name).id, limit)
    except NotFound:
        runs = app.store.list_runs(None, limit, task_name=name)
        if not runs:
            raise
        return runs


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
    from picron.transfer import export_tasks, write_private

    text = export_tasks(app, secrets=args.secrets)
    if args.file:
        try:
            write_private(args.file, text)
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
    print(import_tasks(app, text, actor=f"cli:{current_user()}"))
    return EXIT_OK


def cmd_serve(args, app) -> int:
    from picron.web import serve

    return serve(app, listen=args.listen, scheduler=args.scheduler)


def cmd_passwd(args, app) -> int:
    from picron.webapp.login import read_new_password, remove_password, set_password

    if args.remove:
        removed = remove_password(app.store)
        print("admin password removed (the server now listens only on loopback)" if removed
              else "no admin password was set")
        return EXIT_OK
    set_password(app.store, read_new_password())
    print("admin password set; the web page now requires a login")
    return EXIT_OK


def cmd_token(args, app) -> int:
    from picron.webapp.login import api_token

    print(api_token(app.store, new=args.new))
    return EXIT_OK


def cmd_check(args, app) -> int:
    from picron.errors import StorageError
    from picron.health import check_ticks, failing_tasks
    from picron.liveness import clock_skew_warning

    try:
        ok, message = check_ticks(app.store, app.config.node, app.clock(), args.max_age)
        failing = failing_tasks(app.store, app.config.node) if args.tasks else []
    except StorageError as error:  # damaged, someone else's, unreadable: no tick can complete
        print(f"ticks on node {app.config.node} cannot complete: {error.message}",
              file=sys.stderr)
        return EXIT_FAILED
    print(message, file=sys.stdout if ok else sys.stderr)
    skew = clock_skew_warning(app.clock(), app.store.now())
    if skew:
        print(skew, file=sys.stderr)
    if failing:
        print(f"failing on node {app.config.node}: {', '.join(failing)}", file=sys.stderr)
    return EXIT_OK if ok and not failing else EXIT_FAILED


def cmd_doctor(args, app) -> int:
    """Which config, database and node this command line resolves, and why; exit 1 when a
    tick as this user would fail."""
    from picron.doctor import diagnose

    report = diagnose(getattr(args, "config", None), getattr(args, "db", None), app.clock())
    print("\n".join(report.lines))
    for problem in report.problems:
        print(f"problem:   {problem}")
    if not report.problems:
        print("ok: a run_scheduled tick as this user can use this database")
    return EXIT_FAILED if report.problems else EXIT_OK


def cmd_copy_db(args, app) -> int:
    from picron.storage import is_postgres
    from picron.storage.copy import copy_database

    target = args.target if is_postgres(args.target) else os.path.expanduser(args.target)
    counts = copy_database(app.store, target)
    print(f"copied {counts['task']} tasks, {counts['run']} runs and "
          f"{sum(counts.values())} rows in all")
    return EXIT_OK


def cmd_backup(args, app) -> int:
    import os

    from picron.files import same_file
    from picron.storage import is_postgres

    live = app.config.database
    if live != ":memory:" and not is_postgres(live) and any(
            same_file(args.path, live + suffix) for suffix in ("", "-wal", "-shm", "-journal")):
        raise ValidationError(f"backup: {args.path} is the live database {live} (or one of its "
                              "files); write the backup somewhere else", field="path")
    if os.path.lexists(args.path) and not args.force:
        raise ValidationError(f"backup: {args.path} exists; use --force to replace it",
                              field="path")
    app.store.backup(args.path)
    print(f"backup written to {args.path}")
    return EXIT_OK


def cmd_completion(args, app) -> int:
    from picron.arguments import build_parser
    from picron.completion import bash_script

    print(bash_script(build_parser()), end="")
    return EXIT_OK
