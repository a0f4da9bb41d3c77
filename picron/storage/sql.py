"""The domain queries, written once for every SQL backend (``SqlStore``).

A backend subclass supplies a tiny connection API - ``_all``, ``_one``, ``_exec``,
``_exec_many`` with ``?`` placeholders, ``transaction()`` - and the few hooks for SQL
that differs between databases (``_task_json_sql``, ``_flag``). The queries here are
portable (no ``%``, no ``limit -1``, no untyped NULL parameters, ``returning`` instead of
``lastrowid``); rows come back indexable by position and by column name.

The due index (``task_node.due_at``) is maintained here on every write and every finished
run, so that a cron tick that finds nothing due is one indexed query.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo

from picron.errors import AlreadyRunning, Conflict, NotFound
from picron.records import (FAILURE_STATUSES, MAX_MESSAGE_BYTES, AuditEntry, Claim, Event,
                            Finished, Run, RunningRun, Task, TaskSpec, TickMark,
                            truncate_message)
from picron.schedule import from_db, get_zone, next_fire, to_db, utcnow
from picron.storage import Store, UniqueViolation
from picron.storage.rules import DUE, TICK_UPSERT

# The task table's definition columns (fixed names, never from input), in this order.
_DEFINITION_COLUMNS = ("name", "active", "ordering", "interval", "timezone", "taskmodule",
                       "retry_if_failed", "max_retries", "timeout", "notify_url",
                       "notify_email")
_FLAGS = ("active", "retry_if_failed")
# The task_node columns ``_write_nodes`` writes, in this order.
_NODE_COLUMNS = ("task_id", "node", "position", "last_run_at", "next_run_at", "due_at",
                 "last_status", "failure_streak", "failed_attempts", "last_attempt_at")

# task_node.position of a node the task is not assigned to: the row only keeps what a manual
# run there recorded (SPEC §2 rule 7: shown, never due; the next edit removes it, rule 5).
UNASSIGNED = -1

_RUN_SELECT = ("select run.*, coalesce(task.name, run.task_name) as name from run"
               " left join task on task.id = run.task_id")


class SqlStore(Store):
    """``Store`` over SQL: every domain query, on a backend's connection API."""

    def __init__(self, location: str, default_zone: tzinfo | None = None) -> None:
        self.location = location
        self.default_zone = default_zone

    # -- the backend's connection API ---------------------------------------------------

    @abstractmethod
    def _all(self, sql: str, params: Sequence = ()) -> list:
        """All rows of a query (each indexable by position and by column name)."""

    @abstractmethod
    def _one(self, sql: str, params: Sequence = ()):
        """The first row of a query, or None."""

    @abstractmethod
    def _exec(self, sql: str, params: Sequence = ()) -> int:
        """Execute a statement; returns the number of rows it changed."""

    @abstractmethod
    def _exec_many(self, sql: str, rows: Iterable[Sequence]) -> None:
        """Execute a statement once per parameter row."""

    # -- dialect hooks -------------------------------------------------------------------

    @abstractmethod
    def _task_json_sql(self) -> str:
        """``select <Task.to_json as JSON text> from task t`` (the twin of ``Task.to_json``;
        tests/test_store_json.py keeps the two equal), to be followed by a where clause
        on ``t`` and ``order by t.ordering, t.id``."""

    # What ``limit`` takes for "no limit" (SQLite: -1; PostgreSQL: all).
    _NO_LIMIT = "all"

    def _flag(self, value: bool):
        """A boolean as a query parameter for the flag columns (SQLite: 0/1)."""
        return int(value)

    def now(self) -> datetime:
        return utcnow()

    def snapshot(self) -> AbstractContextManager[None]:
        """Several reads from one consistent state of the database (backups, copies).
        By default a write transaction, which holds the writers off meanwhile."""
        return self.transaction()

    def _copied(self, table: str) -> None:
        """Called after a copy inserted rows with their ids into ``table``: a backend
        whose ids come from a sequence moves it past them."""

    # -- tasks ---------------------------------------------------------------------------

    def list_tasks(self, node: str | None = None, limit: int | None = None,
                   offset: int = 0) -> list[Task]:
        if limit is None or limit < 0:
            page, params = f" limit {self._NO_LIMIT} offset ?", (offset,)
        else:
            page, params = " limit ? offset ?", (limit, offset)
        return self._build_tasks(self._all(f"select * from task order by ordering, id{page}",
                                           params), node)

    def find_tasks(self, now: datetime, *, text: str = "", module: str = "", node: str = "",
                   state: str = "", sort: str = "order", limit: int | None = None,
                   offset: int = 0) -> tuple[list[Task], int]:
        where, params = self._task_filter(now, text, module, node, state)
        total = self._one(f"select count(*) from task t{where}", params)[0]
        page = (f" limit {self._NO_LIMIT} offset ?", (offset,)) if limit is None \
            else (" limit ? offset ?", (limit, offset))
        rows = self._all(f"select t.* from task t{where} order by {_task_order(sort)}{page[0]}",
                         (*params, *page[1]))
        return self._build_tasks(rows), total

    def find_tasks_json(self, now: datetime, *, text: str = "", module: str = "",
                        node: str = "", state: str = "", sort: str = "order") -> list[str]:
        where, params = self._task_filter(now, text, module, node, state)
        return [row[0] for row in self._all(
            f"{self._task_json_sql()}{where} order by {_task_order(sort)}", params)]

    def _task_filter(self, now: datetime, text: str, module: str, node: str,
                     state: str) -> tuple[str, tuple]:
        """The ``where`` clause (on ``task t``) and parameters of ``find_tasks``."""
        clauses, params = [], []
        if text:
            clauses.append("lower(t.name) like ? escape '\\'")
            params.append(_like(text))
        if module:
            clauses.append("t.taskmodule = ?")
            params.append(module)
        if node:
            clauses.append("exists (select 1 from task_node n where n.task_id = t.id"
                           " and n.node = ?)")
            params.append(node)
        if state in _TASK_STATE_SQL:
            sql, values = _TASK_STATE_SQL[state]
            clauses.append(sql)
            params.extend(values(self, now))
        return (f" where {' and '.join(clauses)}" if clauses else ""), tuple(params)

    def data_version(self) -> tuple:
        return tuple(self._one("select (select max(id) from audit), (select max(id) from run),"
                               " (select count(*) from run where status = 'running')"))

    def list_tasks_json(self, node: str | None = None) -> list[str]:
        where, params = ("", ()) if node is None else (
            " where exists (select 1 from task_node where task_id = t.id and node = ?"
            f" and position != {UNASSIGNED})", (node,))
        return [row[0] for row in self._all(
            f"{self._task_json_sql()}{where} order by t.ordering, t.id", params)]

    def count_tasks(self, active: bool | None = None) -> int:
        if active is None:
            return self._one("select count(*) from task")[0]
        return self._one("select count(*) from task where active = ?",
                         (self._flag(active),))[0]

    def get_task(self, task_id: int) -> Task:
        return _make_task(*self._task_parts(task_id))

    def _task_parts(self, task_id: int) -> tuple:
        """The task's row, its options (by key) and its node rows (by position): what
        ``_make_task`` builds a ``Task`` from. A backend where each query is a round trip
        reads them in one. Raises ``NotFound``."""
        row = self._one("select * from task where id = ?", (task_id,))
        if row is None:
            raise NotFound(f"task {task_id} not found", field="id")
        options = {r[0]: r[1] for r in self._all(
            "select key, value from task_option where task_id = ? order by key", (task_id,))}
        return row, options, self._all(
            "select * from task_node where task_id = ? order by position", (task_id,))

    def find_task(self, name: str) -> Task:
        rows = self._all("select * from task where name = ?", (name,))
        if not rows:
            raise NotFound(f"task {name!r} not found", field="name")
        return self._build_tasks(rows)[0]

    def add_task(self, spec: TaskSpec, now: datetime, actor: str = "system") -> Task:
        with self.transaction():
            values = [*self._definition(spec), to_db(now)]
            with _name_must_be_free(spec.name):
                task_id = self._one(
                    f"insert into task ({', '.join(_DEFINITION_COLUMNS)}, last_update)"
                    f" values ({', '.join('?' * len(values))}) returning id", values)[0]
            self._write_options(task_id, spec.options)
            self._write_nodes(task_id, spec, now, last_runs={})
            self._audit(now, actor, "create", task_id, spec.name)
        return self.get_task(task_id)

    def update_task(self, task_id: int, spec: TaskSpec, now: datetime,
                    actor: str = "system", action: str = "edit") -> Task:
        return self.edit_task(task_id, lambda _: spec, now, actor, action)

    def edit_task(self, task_id: int, change: Callable[[TaskSpec], TaskSpec], now: datetime,
                  actor: str = "system", action: str = "edit") -> Task:
        with self.transaction():
            row, options, node_rows = self._task_parts(task_id)
            stored = _make_task(row, options, node_rows)
            spec = change(stored.spec)
            if spec == stored.spec:
                return stored
            definition = self._definition(spec)
            with _name_must_be_free(spec.name):
                self._exec(f"update task set {', '.join(f'{c} = ?' for c in _DEFINITION_COLUMNS)},"
                           " last_update = ? where id = ?", [*definition, to_db(now), task_id])
            if spec.options != stored.spec.options:
                self._exec("delete from task_option where task_id = ?", (task_id,))
                self._write_options(task_id, spec.options)
            nodes = self._write_nodes(task_id, spec, now, {
                r["node"]: (r["last_run_at"], r["last_status"], r["failure_streak"],
                            r["failed_attempts"], r["last_attempt_at"]) for r in node_rows})
            self._audit(now, actor, action, task_id,
                        f"{spec.name}: {_changes(stored.spec, spec)}")
            # The task as stored now, built from what was just written (no second read).
            return _make_task({"id": task_id, **dict(zip(_DEFINITION_COLUMNS, definition)),
                               "last_update": to_db(now)},
                              dict(sorted(spec.options.items())), nodes)

    def set_active(self, task_id: int, active: bool, now: datetime,
                   actor: str = "system") -> Task:
        return self.edit_task(task_id, lambda spec: replace(spec, active=active), now, actor,
                              action="enable" if active else "disable")

    def delete_task(self, task_id: int, now: datetime, actor: str = "system") -> None:
        with self.transaction():
            row = self._one("select name from task where id = ?", (task_id,))
            if row is None:
                raise NotFound(f"task {task_id} not found", field="id")
            self._exec("delete from task where id = ?", (task_id,))
            self._audit(now, actor, "delete", task_id, row[0])

    def _definition(self, spec: TaskSpec) -> list:
        return [self._flag(getattr(spec, column)) if column in _FLAGS else getattr(spec, column)
                for column in _DEFINITION_COLUMNS]

    def _write_options(self, task_id: int, options: dict[str, str]) -> None:
        self._exec_many("insert into task_option (task_id, key, value) values (?, ?, ?)",
                        [(task_id, key, value) for key, value in options.items()])

    def _write_nodes(self, task_id: int, spec: TaskSpec, now: datetime,
                     last_runs: dict[str, tuple]) -> list[dict]:
        """Replace the task's node rows (an unassigned node's row goes: rule 5); returns
        the rows written, by position."""
        zone = get_zone(spec.timezone, self.default_zone)
        self._exec("delete from task_node where task_id = ?", (task_id,))
        rows = []
        for position, node in enumerate(spec.nodes):
            last_run_at, last_status, streak, attempts, attempt_at = last_runs.get(
                node, (None, None, 0, 0, None))
            reference = from_db(last_run_at) or now
            next_run = to_db(next_fire(spec.interval, reference, zone))
            rows.append((task_id, node, position, last_run_at, next_run,
                         next_run if spec.active else None, last_status, streak, attempts,
                         attempt_at))
        self._exec_many(
            "insert into task_node (task_id, node, position, last_run_at, next_run_at, due_at,"
            " last_status, failure_streak, failed_attempts, last_attempt_at)"
            " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return [dict(zip(_NODE_COLUMNS, row)) for row in rows]

    def _build_tasks(self, rows: list, node: str | None = None) -> list[Task]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        where = "" if len(ids) > 500 else f" where task_id in ({','.join('?' * len(ids))})"
        params = () if where == "" else ids
        options: dict[int, dict] = {}
        for row in self._all(f"select task_id, key, value from task_option{where}"
                             " order by task_id, key", params):
            options.setdefault(row[0], {})[row[1]] = row[2]
        nodes: dict[int, list] = {}
        for row in self._all(f"select * from task_node{where} order by task_id, position",
                             params):
            nodes.setdefault(row["task_id"], []).append(row)
        tasks = []
        for row in rows:
            task = _make_task(row, options.get(row["id"], {}), nodes.get(row["id"], []))
            if node is None or node in task.nodes:
                tasks.append(task)
        return tasks

    # -- scheduling ----------------------------------------------------------------------

    def set_last_run(self, task_id: int, node: str, at: datetime) -> None:
        with self.transaction():
            row = self._one(
                "select task.interval, task.timezone, task.active from task join task_node"
                " on task_node.task_id = task.id and task_node.node = ?"
                f" and task_node.position != {UNASSIGNED} where task.id = ?", (node, task_id))
            if row is None:
                raise NotFound(f"task {task_id} is not assigned to node {node}", field="node")
            next_run = to_db(next_fire(row[0], at, get_zone(row[1], self.default_zone)))
            self._exec(
                "update task_node set last_run_at = ?, next_run_at = ?, due_at = ?,"
                " failed_attempts = 0 where task_id = ? and node = ?",
                (to_db(at), next_run, next_run if row[2] else None, task_id, node))

    def due_task_ids(self, node: str, now: datetime) -> list[int]:
        rows = self._all(
            "select task.id from task_node join task on task.id = task_node.task_id"
            f" where {DUE} order by task.ordering, task.id", (node, to_db(now)))
        return [row[0] for row in rows]

    def tick_mark(self) -> TickMark:
        rows = self._all("select id, status from run where status = 'running'"
                         " or id = (select max(id) from run)")
        return TickMark(last_run_id=max((row[0] for row in rows), default=0),
                        running=tuple(row[0] for row in rows if row[1] == "running"))

    def future_references(self, node: str, now: datetime) -> list[tuple[str, datetime]]:
        rows = self._all(
            "select task.name, task_node.last_run_at from task_node"
            " join task on task.id = task_node.task_id"
            " where task_node.node = ? and task_node.last_run_at > ?"
            f" and task_node.position != {UNASSIGNED}", (node, to_db(now)))
        return [(row[0], from_db(row[1])) for row in rows]

    def claim_run(self, task_id: int, node: str, trigger: str, now: datetime, *,
                  pid: int, host: str, timeout: int, mark: TickMark | None = None,
                  boot_id: str | None = None, pidns: str | None = None,
                  proc_start: str | None = None, pgid: int | None = None,
                  lease_until: datetime | None = None,
                  db_now: datetime | None = None) -> Claim | None:
        scheduled = trigger == "scheduled"
        if scheduled and self._one(
                f"select 1 from task_node where task_node.task_id = ? and {DUE} and not exists"
                " (select 1 from run where run.task_id = task_node.task_id and run.node ="
                " task_node.node and run.status = 'running')",
                (task_id, node, to_db(now))) is None:
            return None  # won by another process already: no need to queue for the write lock
        try:
            with self.transaction():
                if scheduled:
                    unfinished, params = _unfinished_at(mark)
                    row = self._one(
                        "select task.timeout from task join task_node on task_node.task_id"
                        f" = task.id where task.id = ? and {DUE}{unfinished}",
                        (task_id, node, to_db(now), *params))
                else:
                    row = self._one("select timeout from task where id = ?", (task_id,))
                if row is None:
                    if scheduled:
                        return None
                    raise NotFound(f"task {task_id} not found", field="id")
                effective = row[0] or timeout
                run_id = self._one(
                    "insert into run (task_id, task_name, node, trigger, status, start_at,"
                    " pid, host, deadline_at, boot_id, pidns, proc_start, pgid, lease_until)"
                    " select id, name, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ? from task"
                    " where id = ? returning id",
                    (node, trigger, to_db(now), pid, host,
                     to_db((db_now or now) + timedelta(seconds=effective)), boot_id, pidns,
                     proc_start, pgid, to_db(lease_until) if lease_until else None,
                     task_id))[0]
        except UniqueViolation:
            if scheduled:
                return None  # another process is running it there
            name = self.get_task(task_id).name
            raise AlreadyRunning(f"task {name!r} is already running on node {node}; "
                                 "not started again") from None
        return Claim(run_id=run_id, task=self.get_task(task_id), node=node, trigger=trigger,
                     start=from_db(to_db(now)), timeout=effective)

    def finish_run(self, run_id: int, status: str, end: datetime, duration: float,
                   message: str = "") -> Finished | None:
        with self.transaction():
            run = self._one(
                "update run set status = ?, end_at = ?, duration = ?, message = ?"
                " where id = ? and status = 'running' returning task_id, node, start_at",
                (status, to_db(end), round(duration, 3), truncate_message(message), run_id))
            if run is None:
                return None
            before = self._node_state(run[0], run[1])
            self._apply_result(run[0], run[1], run[2], status)
        return Finished(run_id=run_id, status=status, before=before)

    def _node_state(self, task_id: int | None, node: str) -> tuple[str | None, int] | None:
        """(last status, failure streak) of a task on a node, (None, 0) before its first
        run there, None if the task is gone (SPEC §7 decides down/up from this)."""
        row = self._one("select task_node.last_status, task_node.failure_streak from task"
                        " left join task_node on task_node.task_id = task.id"
                        " and task_node.node = ? where task.id = ?", (node, task_id))
        return None if row is None else (row[0], row[1] or 0)

    def renew_run(self, run_id: int, lease_until: datetime, pgid: int | None = None) -> bool:
        with self.transaction():
            if pgid is None:
                return self._exec("update run set lease_until = ? where id = ?"
                                  " and status = 'running'", (to_db(lease_until), run_id)) == 1
            return self._exec("update run set lease_until = ?, pgid = ? where id = ?"
                              " and status = 'running'", (to_db(lease_until), pgid, run_id)) == 1

    def _apply_result(self, task_id: int | None, node: str, start_at: str,
                      status: str) -> None:
        """SPEC §2 rule 4: a success, or a failure that counts, becomes the node's last run
        and moves the next run; a failure that will be retried keeps the slot, so the task
        stays due (an overlapping tick is kept from retrying it by its ``TickMark``)."""
        row = self._one(
            "select task.interval, task.timezone, task.active, task.retry_if_failed,"
            " task.max_retries, task_node.position, task_node.last_run_at,"
            " task_node.next_run_at, task_node.failure_streak, task_node.failed_attempts"
            " from task left join task_node on task_node.task_id = task.id"
            " and task_node.node = ? where task.id = ?", (node, task_id))
        if row is None:
            return  # deleted meanwhile
        failed = status != "success"
        attempts = (row["failed_attempts"] or 0) + 1 if failed else 0
        counts = (not failed or not row["retry_if_failed"]
                  or (row["max_retries"] is not None and attempts > row["max_retries"]))
        last_run_at, next_run_at = row["last_run_at"], row["next_run_at"]
        if row["position"] is None or row["position"] == UNASSIGNED:
            self._record_unassigned(task_id, node, start_at if counts else last_run_at,
                                    status, (row["failure_streak"] or 0) + 1 if failed else 0,
                                    0 if counts else attempts, start_at)
            return
        if counts:
            attempts, last_run_at = 0, start_at
            zone = get_zone(row["timezone"], self.default_zone)
            next_run_at = to_db(next_fire(row["interval"], from_db(start_at), zone))
        self._exec(
            "update task_node set last_run_at = ?, next_run_at = ?, due_at = ?,"
            " last_status = ?, failure_streak = ?, failed_attempts = ?, last_attempt_at = ?"
            " where task_id = ? and node = ?",
            (last_run_at, next_run_at, next_run_at if row["active"] else None, status,
             row["failure_streak"] + 1 if failed else 0, attempts, start_at, task_id, node))

    def _record_unassigned(self, task_id: int, node: str, last_run_at: str | None,
                           status: str, streak: int, attempts: int, start_at: str) -> None:
        """Rule 7: a manual run on a node the task is not assigned to keeps its result in a
        row that is never due (``next_run_at`` holds the run's start only to be non-null)."""
        self._exec(
            "insert into task_node (task_id, node, position, last_run_at, next_run_at, due_at,"
            " last_status, failure_streak, failed_attempts, last_attempt_at)"
            f" values (?, ?, {UNASSIGNED}, ?, ?, null, ?, ?, ?, ?) on conflict (task_id, node)"
            " do update set last_run_at = excluded.last_run_at, last_status ="
            " excluded.last_status, failure_streak = excluded.failure_streak,"
            " failed_attempts = excluded.failed_attempts,"
            " last_attempt_at = excluded.last_attempt_at",
            (task_id, node, last_run_at, start_at, status, streak, attempts, start_at))

    def running_runs(self) -> list[RunningRun]:
        rows = self._all(
            "select id, task_id, node, pid, host, start_at, deadline_at, boot_id, pidns,"
            " proc_start, pgid, lease_until from run where status = 'running'")
        return [RunningRun(id=r[0], task_id=r[1], node=r[2], pid=r[3], host=r[4],
                           start=from_db(r[5]), deadline=from_db(r[6]), boot_id=r[7],
                           pidns=r[8], proc_start=r[9], pgid=r[10],
                           lease_until=from_db(r[11])) for r in rows]

    def record_tick(self, node: str, now: datetime) -> None:
        with self.transaction():
            self._exec(TICK_UPSERT, (node, to_db(now)))

    def last_tick(self, node: str) -> datetime | None:
        row = self._one("select at from tick where node = ?", (node,))
        return from_db(row[0]) if row else None

    def last_ticks(self) -> dict[str, datetime]:
        return {r[0]: from_db(r[1]) for r in self._all("select node, at from tick")}

    # -- run history ---------------------------------------------------------------------

    def list_runs(self, task_id: int | None = None, limit: int = 50,
                  status: str | None = None, task_name: str | None = None) -> list[Run]:
        clauses, params = [], []
        if task_name is not None:
            clauses.append("run.task_id is null and run.task_name = ?")
            params.append(task_name)
        if task_id is not None:
            clauses.append("run.task_id = ?")
            params.append(task_id)
        if status is not None:
            clauses.append("run.status = ?")
            params.append(status)
        return self._select_runs(clauses, params, limit)

    def _select_runs(self, clauses: list[str], params: list, limit: int) -> list[Run]:
        """Runs matching every clause, newest first."""
        where = f" where {' and '.join(clauses)}" if clauses else ""
        rows = self._all(f"{_RUN_SELECT}{where} order by run.id desc limit ?",
                         (*params, limit))
        return [_run(row) for row in rows]

    def append_run_message(self, run_id: int, line: str) -> None:
        with self.transaction():
            row = self._one("select message from run where id = ?", (run_id,))
            if row is None:
                raise NotFound(f"run {run_id} not found", field="id")
            line = truncate_message(line, MAX_MESSAGE_BYTES // 2)
            room = MAX_MESSAGE_BYTES - len(line.encode()) - 1
            message = f"{truncate_message(row[0], room)}\n{line}" if row[0] else line
            self._exec("update run set message = ? where id = ?", (message, run_id))

    def find_runs(self, *, task_id: int | None = None, text: str = "", status: str = "",
                  node: str = "", trigger: str = "", before: int | None = None,
                  limit: int = 50) -> list[Run]:
        clauses, params = [], []
        for column, value in (("run.status", status), ("run.node", node),
                              ("run.trigger", trigger)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if task_id is not None:
            clauses.append("run.task_id = ?")
            params.append(task_id)
        if text:
            clauses.append("lower(coalesce(task.name, run.task_name)) like ? escape '\\'")
            params.append(_like(text))
        if before is not None:
            clauses.append("run.id < ?")
            params.append(before)
        return self._select_runs(clauses, params, limit)

    def get_run(self, run_id: int) -> Run:
        row = self._one(f"{_RUN_SELECT} where run.id = ?", (run_id,))
        if row is None:
            raise NotFound(f"run {run_id} not found", field="id")
        return _run(row)

    def count_runs(self, since: datetime, statuses: Iterable[str]) -> int:
        statuses = tuple(statuses)
        return self._one(f"select count(*) from run where start_at >= ? and status in"
                         f" ({','.join('?' * len(statuses))})", (to_db(since), *statuses))[0]

    def run_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._all("select status, count(*) from run group by status")}

    def delete_runs_before(self, before: datetime) -> int:
        with self.transaction():
            return self._exec("delete from run where start_at < ? and status != 'running'",
                              (to_db(before),))

    # -- counters, stats, settings, audit, events ----------------------------------------

    def change_counter(self, name: str, by: int) -> int:
        with self.transaction():
            return self._one(
                "insert into counter (name, value) values (?, ?) on conflict (name)"
                " do update set value = counter.value + excluded.value returning value",
                (name, by))[0]

    def set_counter(self, name: str, value: int) -> None:
        with self.transaction():
            self._exec("insert into counter (name, value) values (?, ?) on conflict (name)"
                       " do update set value = excluded.value", (name, value))

    def get_counter(self, name: str) -> int | None:
        row = self._one("select value from counter where name = ?", (name,))
        return row[0] if row else None

    def list_counters(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._all("select name, value from counter order by name")}

    def add_stat(self, key: str, at: datetime, value: int) -> None:
        with self.transaction():
            self._exec("insert into stat (key, at, value) values (?, ?, ?)",
                       (key, to_db(at), value))

    def stat_keys(self) -> list[str]:
        return [r[0] for r in self._all("select distinct key from stat order by key")]

    def get_stats(self, key: str, start: datetime | None = None,
                  end: datetime | None = None) -> list[tuple[datetime, int]]:
        rows = self._all("select at, value from stat where key = ? and at >= ? and at <= ?"
                         " order by at, id",
                         (key, to_db(start) if start else "", to_db(end) if end else "~"))
        return [(from_db(r[0]), r[1]) for r in rows]

    def latest_stats(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._all(
            "select key, value from stat where id in (select max(id) from stat group by key)")}

    def delete_stats(self, key: str | None = None, before: datetime | None = None) -> int:
        clauses = ["at < ?"]
        params = [to_db(before) if before else "~"]
        if key is not None:
            clauses.append("key = ?")
            params.append(key)
        with self.transaction():
            return self._exec(f"delete from stat where {' and '.join(clauses)}", params)

    def get_setting(self, key: str) -> str | None:
        row = self._one("select value from setting where key = ?", (key,))
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction():
            self._exec("insert into setting (key, value) values (?, ?) on conflict (key)"
                       " do update set value = excluded.value", (key, value))

    def delete_setting(self, key: str) -> bool:
        with self.transaction():
            return self._exec("delete from setting where key = ?", (key,)) > 0

    def list_audit(self, limit: int = 100, task_id: int | None = None) -> list[AuditEntry]:
        where, params = ("", ()) if task_id is None else (" where task_id = ?", (task_id,))
        rows = self._all("select id, at, actor, action, task_id, detail from audit"
                         f"{where} order by id desc limit ?", (*params, limit))
        return [AuditEntry(id=r[0], at=from_db(r[1]), actor=r[2], action=r[3], task_id=r[4],
                           detail=r[5]) for r in rows]

    def _audit(self, now: datetime, actor: str, action: str, task_id: int | None,
               detail: str) -> None:
        self._exec("insert into audit (at, actor, action, task_id, detail)"
                   " values (?, ?, ?, ?, ?)", (to_db(now), actor, action, task_id, detail))

    def add_event(self, at: datetime, event: str, task_id: int | None, task_name: str,
                  node: str, run_id: int | None, failure_streak: int) -> int:
        with self.transaction():
            return self._one(
                "insert into event (at, event, task_id, task_name, node, run_id,"
                " failure_streak) values (?, ?, ?, ?, ?, ?, ?) returning id",
                (to_db(at), event, task_id, task_name, node, run_id, failure_streak))[0]

    def list_events(self, limit: int = 100) -> list[Event]:
        rows = self._all("select id, at, event, task_id, task_name, node, run_id,"
                         " failure_streak, delivered, detail from event"
                         " order by id desc limit ?", (limit,))
        return [Event(id=r[0], at=from_db(r[1]), event=r[2], task_id=r[3], task_name=r[4],
                      node=r[5], run_id=r[6], failure_streak=r[7], delivered=bool(r[8]),
                      detail=r[9]) for r in rows]

    def mark_event_delivered(self, event_id: int, delivered: bool, detail: str = "") -> None:
        with self.transaction():
            if not self._exec("update event set delivered = ?, detail = ? where id = ?",
                              (self._flag(delivered), truncate_message(detail), event_id)):
                raise NotFound(f"event {event_id} not found", field="id")


def _unfinished_at(mark: TickMark | None) -> tuple[str, tuple]:
    """The claim's condition that no run of the task that was unfinished at ``mark`` has
    failed since (a success moved the next run: whether that is due is the rule's)."""
    if mark is None:
        return "", ()
    running = (f" or run.id in ({', '.join('?' * len(mark.running))})"
               if mark.running else "")
    failures = ", ".join("?" * len(FAILURE_STATUSES))
    return (" and not exists (select 1 from run where run.task_id = task.id and run.node ="
            f" task_node.node and run.status in ({failures}) and (run.id > ?{running}))",
            (*FAILURE_STATUSES, mark.last_run_id, *mark.running))


def _make_task(row, options: dict[str, str], node_rows: Sequence) -> Task:
    """A ``Task`` from its task row, options and node rows (by position; rows are
    read by column name)."""
    assigned = [r for r in node_rows if r["position"] != UNASSIGNED]
    return Task(
        id=row["id"], name=row["name"], active=bool(row["active"]),
        ordering=row["ordering"], interval=row["interval"], timezone=row["timezone"],
        nodes=tuple(r["node"] for r in assigned), taskmodule=row["taskmodule"],
        options=options, retry_if_failed=bool(row["retry_if_failed"]),
        max_retries=row["max_retries"], timeout=row["timeout"],
        last_update=from_db(row["last_update"]),
        last_runs={r["node"]: from_db(r["last_run_at"]) for r in node_rows if r["last_run_at"]},
        next_runs={r["node"]: from_db(r["next_run_at"]) for r in assigned},
        last_status={r["node"]: r["last_status"] for r in node_rows if r["last_status"]},
        failure_streak={r["node"]: r["failure_streak"] for r in node_rows},
        notify_url=row["notify_url"], notify_email=row["notify_email"],
        last_attempts={r["node"]: from_db(r["last_attempt_at"])
                       for r in node_rows if r["last_attempt_at"]},
    )


@contextmanager
def _name_must_be_free(name: str):
    try:
        yield
    except UniqueViolation:
        raise Conflict(f"name: a task named {name!r} already exists", field="name") from None


def _run(row) -> Run:
    return Run(id=row["id"], task_id=row["task_id"], task=row["name"], node=row["node"],
               trigger=row["trigger"], status=row["status"], start=from_db(row["start_at"]),
               end=from_db(row["end_at"]), duration=row["duration"], message=row["message"])


# -- filters of the web's lists (portable SQL: PostgreSQL reuses them) --------------------

_TASK_ORDERS = {"order": "t.ordering{d}, t.id{d}", "name": "t.name{d}, t.id",
                "module": "t.taskmodule{d}, t.ordering, t.id",
                "updated": "t.last_update{d}, t.id",
                "next": "(select min(n.next_run_at) from task_node n where n.task_id = t.id){d},"
                        " t.ordering, t.id"}
_TASK_STATE_SQL = {
    "inactive": ("t.active = ?", lambda store, now: (store._flag(False),)),
    "active": ("t.active = ?", lambda store, now: (store._flag(True),)),
    "failing": ("exists (select 1 from task_node n where n.task_id = t.id"
                " and n.failure_streak > 0)", lambda store, now: ()),
    "retrying": ("t.active = ? and exists (select 1 from task_node n where n.task_id = t.id"
                 " and n.failure_streak > 0 and n.next_run_at <= ?)",
                 lambda store, now: (store._flag(True), to_db(now))),
    "running": ("exists (select 1 from run r where r.task_id = t.id and r.status = 'running')",
                lambda store, now: ()),
}


def _changes(old: TaskSpec, new: TaskSpec) -> str:
    """What an edit changed, for the audit log: ``interval */5 * * * * → */10 * * * *``;
    options only by name (a value may be a secret)."""
    parts = []
    for name in TaskSpec.__dataclass_fields__:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if name == "options":
            keys = sorted(k for k in before.keys() | after.keys()
                          if before.get(k) != after.get(k))
            parts.append(f"options {', '.join(keys)} changed")
        else:
            show = (lambda v: ",".join(v) if isinstance(v, tuple) else
                    "-" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            parts.append(f"{name} {show(before)} → {show(after)}")
    return "; ".join(parts)


def _like(text: str) -> str:
    """A ``like`` pattern (with ``escape '\\'``) for "contains ``text``", lower case."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _task_order(sort: str) -> str:
    """The ``order by`` of a sort key (``-name``: descending); unknown keys: run order."""
    key = sort.removeprefix("-")
    return _TASK_ORDERS.get(key, _TASK_ORDERS["order"]).format(
        d=" desc" if sort.startswith("-") and key in _TASK_ORDERS else "")
