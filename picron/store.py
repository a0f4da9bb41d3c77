"""Every query picron makes: tasks, runs, ticks, counters, stats, audit log, settings.

Rows leave this module as the frozen dataclasses of ``picron.records``; callers never see
SQL or cursors. The due
index (``task_node.due_at``) is maintained here on every write and every finished run,
so that a cron tick that finds nothing due is one indexed query.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable  # not typing: a cron tick imports this module
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, tzinfo

from picron.db import TICK_UPSERT, storage_error, transaction
from picron.errors import AlreadyRunning, Conflict, NotFound
from picron.records import (AuditEntry, Claim, Run, RunningRun, Task, TaskSpec,
                            truncate_message)
from picron.schedule import ceil_second, from_db, to_db


class Store:
    """The picron database seen through its operations.

    ``default_zone`` is the server time zone used for tasks whose ``timezone`` is null.
    All methods take the current time as a parameter; none reads a clock.
    """

    def __init__(self, conn: sqlite3.Connection, default_zone: tzinfo | None = None) -> None:
        self.conn = conn
        self.default_zone = default_zone

    # -- tasks ---------------------------------------------------------------------

    def list_tasks(self, node: str | None = None, limit: int = -1,
                   offset: int = 0) -> list[Task]:
        """All tasks in run order (ordering, id), optionally only those assigned to ``node``;
        ``limit``/``offset`` give one page of them (without ``node``)."""
        rows = self._query("select * from task order by ordering, id limit ? offset ?",
                           (limit, offset))
        return self._build_tasks(rows, node)

    def task_position(self, task: Task) -> int:
        """How many tasks come before ``task`` in run order (to find its page)."""
        return self._query("select count(*) from task where ordering < ?"
                           " or (ordering = ? and id < ?)",
                           (task.ordering, task.ordering, task.id))[0][0]

    def list_tasks_json(self, node: str | None = None) -> list[str]:
        """``list_tasks`` as the JSON texts of ``Task.to_json``, built by SQLite itself.

        Listing 10,000 tasks through Python objects and back costs about a second; SQLite's
        JSON functions do it in a tenth of that (``picron list --json``, ``GET /api/tasks``).
        """
        where, params = ("", ()) if node is None else (
            " where exists (select 1 from task_node where task_id = t.id and node = ?)", (node,))
        return [row[0] for row in self._query(f"{_TASK_JSON}{where} order by t.ordering, t.id",
                                              params)]

    def get_task(self, task_id: int) -> Task:
        """The task with this id; raises ``NotFound``."""
        rows = self._query("select * from task where id = ?", (task_id,))
        if not rows:
            raise NotFound(f"task {task_id} not found", field="id")
        return self._build_tasks(rows)[0]

    def find_task(self, name: str) -> Task:
        """The task with this exact name; raises ``NotFound`` naming it."""
        rows = self._query("select * from task where name = ?", (name,))
        if not rows:
            raise NotFound(f"task {name!r} not found", field="name")
        return self._build_tasks(rows)[0]

    def add_task(self, spec: TaskSpec, now: datetime, actor: str = "system") -> Task:
        """Insert a new task; raises ``Conflict`` if the name is taken."""
        with self._write():
            values = {**_definition_values(spec), "last_update": to_db(now)}
            with _name_must_be_free(spec.name):
                task_id = self.conn.execute(
                    f"insert into task ({', '.join(values)})"
                    f" values ({', '.join(':' + key for key in values)})", values).lastrowid
            self._write_options(task_id, spec.options)
            self._write_nodes(task_id, spec, now, last_runs={})
            self._audit(now, actor, "create", task_id, spec.name)
        return self.get_task(task_id)

    def update_task(self, task_id: int, spec: TaskSpec, now: datetime,
                    actor: str = "system", action: str = "edit") -> Task:
        """Replace a task's definition (SPEC §2 rule 5: keeps last runs of kept nodes)."""
        with self._write():
            last_runs = self._last_runs(task_id)
            values = {**_definition_values(spec), "last_update": to_db(now)}
            with _name_must_be_free(spec.name):
                changed = self.conn.execute(
                    f"update task set {', '.join(f'{key} = :{key}' for key in values)}"
                    " where id = :id", {**values, "id": task_id}).rowcount
            if not changed:
                raise NotFound(f"task {task_id} not found", field="id")
            self.conn.execute("delete from task_option where task_id = ?", (task_id,))
            self._write_options(task_id, spec.options)
            self._write_nodes(task_id, spec, now, last_runs)
            self._audit(now, actor, action, task_id, spec.name)
        return self.get_task(task_id)

    def set_active(self, task_id: int, active: bool, now: datetime,
                   actor: str = "system") -> Task:
        """Enable or disable a task; sets ``last_update`` (SPEC §2 rule 5)."""
        spec = replace(self.get_task(task_id).spec, active=active)
        return self.update_task(task_id, spec, now, actor,
                                action="enable" if active else "disable")

    def delete_task(self, task_id: int, now: datetime, actor: str = "system") -> None:
        """Delete a task; its run history stays (with the task's name). Raises ``NotFound``."""
        with self._write():
            row = self.conn.execute("select name from task where id = ?", (task_id,)).fetchone()
            if row is None:
                raise NotFound(f"task {task_id} not found", field="id")
            self.conn.execute("delete from task where id = ?", (task_id,))
            self._audit(now, actor, "delete", task_id, row["name"])

    def _write_options(self, task_id: int, options: dict[str, str]) -> None:
        self.conn.executemany(
            "insert into task_option (task_id, key, value) values (?, ?, ?)",
            [(task_id, key, value) for key, value in options.items()])

    def _last_runs(self, task_id: int) -> dict[str, tuple]:
        rows = self.conn.execute(
            "select node, last_run_at, last_status, failure_streak, failed_attempts"
            " from task_node where task_id = ?", (task_id,)).fetchall()
        return {row["node"]: tuple(row)[1:] for row in rows}

    def _write_nodes(self, task_id: int, spec: TaskSpec, now: datetime,
                     last_runs: dict[str, tuple]) -> None:
        from picron.schedule import get_zone, next_fire

        zone = get_zone(spec.timezone, self.default_zone)
        self.conn.execute("delete from task_node where task_id = ?", (task_id,))
        rows = []
        for position, node in enumerate(spec.nodes):
            last_run_at, last_status, streak, attempts = last_runs.get(node, (None, None, 0, 0))
            reference = from_db(last_run_at) or now
            next_run = to_db(next_fire(spec.interval, reference, zone))
            rows.append((task_id, node, position, last_run_at, next_run,
                         next_run if spec.active else None, last_status, streak, attempts))
        self.conn.executemany(
            "insert into task_node (task_id, node, position, last_run_at, next_run_at, due_at,"
            " last_status, failure_streak, failed_attempts) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows)

    def _build_tasks(self, rows: list[sqlite3.Row], node: str | None = None) -> list[Task]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        where = "" if len(ids) > 500 else f" where task_id in ({','.join('?' * len(ids))})"
        params = () if where == "" else ids
        options: dict[int, dict] = {}
        for row in self._query(f"select task_id, key, value from task_option{where}"
                               " order by task_id, key", params):
            options.setdefault(row[0], {})[row[1]] = row[2]
        nodes: dict[int, list] = {}
        for row in self._query(f"select * from task_node{where} order by task_id, position",
                               params):
            nodes.setdefault(row["task_id"], []).append(row)
        tasks = []
        for row in rows:
            node_rows = nodes.get(row["id"], [])
            if node is not None and node not in {r["node"] for r in node_rows}:
                continue
            tasks.append(Task(
                id=row["id"], name=row["name"], active=bool(row["active"]),
                ordering=row["ordering"], interval=row["interval"], timezone=row["timezone"],
                nodes=tuple(r["node"] for r in node_rows), taskmodule=row["taskmodule"],
                options=options.get(row["id"], {}),
                retry_if_failed=bool(row["retry_if_failed"]), max_retries=row["max_retries"],
                timeout=row["timeout"], last_update=from_db(row["last_update"]),
                last_runs={r["node"]: from_db(r["last_run_at"])
                           for r in node_rows if r["last_run_at"]},
                next_runs={r["node"]: from_db(r["next_run_at"]) for r in node_rows},
                last_status={r["node"]: r["last_status"] for r in node_rows if r["last_status"]},
                failure_streak={r["node"]: r["failure_streak"] for r in node_rows},
            ))
        return tasks

    # -- scheduling ------------------------------------------------------------------

    def set_last_run(self, task_id: int, node: str, at: datetime) -> None:
        """Record ``at`` as the last run on ``node`` and reschedule (privacyIDEA's
        ``set_periodic_task_last_run``; for tests, imports and repairs).

        Raises ``NotFound`` unless the task is assigned to ``node``.
        """
        from picron.schedule import get_zone, next_fire

        with self._write():
            row = self.conn.execute(
                "select task.interval, task.timezone, task.active from task join task_node"
                " on task_node.task_id = task.id and task_node.node = ? where task.id = ?",
                (node, task_id)).fetchone()
            if row is None:
                raise NotFound(f"task {task_id} is not assigned to node {node}", field="node")
            next_run = to_db(next_fire(row["interval"], at,
                                       get_zone(row["timezone"], self.default_zone)))
            self.conn.execute(
                "update task_node set last_run_at = ?, next_run_at = ?, due_at = ?,"
                " failed_attempts = 0 where task_id = ? and node = ?",
                (to_db(at), next_run, next_run if row["active"] else None, task_id, node))

    def due_task_ids(self, node: str, now: datetime) -> list[int]:
        """Ids of active tasks due on ``node`` at ``now``, in run order (one indexed query)."""
        rows = self.conn.execute(
            "select task.id from task_node join task on task.id = task_node.task_id"
            " where task_node.node = ? and task_node.due_at <= ?"
            " order by task.ordering, task.id", (node, to_db(now))).fetchall()
        return [row[0] for row in rows]

    def future_references(self, node: str, now: datetime) -> list[tuple[str, datetime]]:
        """Tasks on ``node`` whose last run lies after ``now``: the clock went backwards."""
        rows = self.conn.execute(
            "select task.name, task_node.last_run_at from task_node"
            " join task on task.id = task_node.task_id"
            " where task_node.node = ? and task_node.last_run_at > ?",
            (node, to_db(now))).fetchall()
        return [(row[0], from_db(row[1])) for row in rows]

    def claim_run(self, task_id: int, node: str, trigger: str, now: datetime, *,
                  pid: int, host: str, timeout: int) -> Claim | None:
        """Atomically start a run: insert its ``running`` row, or refuse.

        A scheduled claim succeeds only while the task is due on ``node``; it returns None
        when the task is no longer due or is already running there (another process won).
        A manual claim raises ``NotFound`` or ``AlreadyRunning`` instead. ``timeout`` is
        the default for a task without its own; it sets the run's deadline.
        """
        due_join = ("join task_node on task_node.task_id = task.id and task_node.node = :node"
                    " and task_node.due_at <= :now" if trigger == "scheduled" else "")
        params = {"id": task_id, "node": node, "trigger": trigger, "now": to_db(now),
                  "pid": pid, "host": host, "timeout": timeout}
        try:
            with self._write():
                row = self.conn.execute(
                    "insert into run (task_id, task_name, node, trigger, status, start_at, pid,"
                    " host, deadline_at) select task.id, task.name, :node, :trigger, 'running',"
                    " :now, :pid, :host, strftime('%Y-%m-%dT%H:%M:%S+00:00', :now, '+' ||"
                    f" coalesce(task.timeout, :timeout) || ' seconds') from task {due_join}"
                    " where task.id = :id"
                    " returning id", params).fetchone()
        except sqlite3.IntegrityError:
            if trigger == "scheduled":
                return None
            name = self.get_task(task_id).name
            raise AlreadyRunning(f"task {name!r} is already running on node {node}; "
                                 "not started again") from None
        if row is None:
            if trigger == "scheduled":
                return None
            raise NotFound(f"task {task_id} not found", field="id")
        return Claim(run_id=row[0], task=self.get_task(task_id), node=node, trigger=trigger,
                     start=from_db(params["now"]))

    def finish_run(self, run_id: int, status: str, end: datetime, duration: float,
                   message: str = "") -> bool:
        """Record the end of a run and apply SPEC §2 rule 4 to the task's schedule.

        Only a run still ``running`` is finished (compare-and-set); returns whether this
        call finished it. A success, or a failure that counts, becomes the node's last run
        and moves the next run; a failure that will be retried keeps the slot but is not
        due again before ``end``, so ticks that overlapped it do not retry it at once.
        """
        with self._write():
            run = self.conn.execute(
                "update run set status = ?, end_at = ?, duration = ?, message = ?"
                " where id = ? and status = 'running' returning task_id, node, start_at",
                (status, to_db(end), round(duration, 3), truncate_message(message),
                 run_id)).fetchone()
            if run is None:
                return False
            self._apply_result(run["task_id"], run["node"], run["start_at"], status, end)
        return True

    def _apply_result(self, task_id: int | None, node: str, start_at: str, status: str,
                      end: datetime) -> None:
        row = self.conn.execute(
            "select task.*, task_node.last_run_at, task_node.next_run_at,"
            " task_node.failure_streak, task_node.failed_attempts from task"
            " join task_node on task_node.task_id = task.id and task_node.node = ?"
            " where task.id = ?", (node, task_id)).fetchone()
        if row is None:
            return  # deleted meanwhile, or a manual run on a node the task is not on
        failed = status != "success"
        attempts = row["failed_attempts"] + 1 if failed else 0
        counts = (not failed or not row["retry_if_failed"]
                  or (row["max_retries"] is not None and attempts > row["max_retries"]))
        last_run_at, next_run_at = row["last_run_at"], row["next_run_at"]
        if counts:
            from picron.schedule import get_zone, next_fire

            attempts, last_run_at = 0, start_at
            zone = get_zone(row["timezone"], self.default_zone)
            next_run_at = to_db(next_fire(row["interval"], from_db(start_at), zone))
            due_at = next_run_at
        else:
            due_at = max(next_run_at, to_db(ceil_second(end)))
        self.conn.execute(
            "update task_node set last_run_at = ?, next_run_at = ?, due_at = ?,"
            " last_status = ?, failure_streak = ?, failed_attempts = ?"
            " where task_id = ? and node = ?",
            (last_run_at, next_run_at, due_at if row["active"] else None, status,
             row["failure_streak"] + 1 if failed else 0, attempts, task_id, node))

    def running_runs(self) -> list[RunningRun]:
        """Runs marked ``running`` (normally few: the partial index holds only these)."""
        rows = self.conn.execute(
            "select id, task_id, node, pid, host, start_at, deadline_at from run"
            " where status = 'running'").fetchall()
        return [RunningRun(id=r[0], task_id=r[1], node=r[2], pid=r[3], host=r[4],
                           start=from_db(r[5]), deadline=from_db(r[6])) for r in rows]

    def record_tick(self, node: str, now: datetime) -> None:
        """Note that ``run_scheduled`` was invoked on ``node`` (backs ``picron check``)."""
        with self._write():
            self.conn.execute(TICK_UPSERT, (node, to_db(now)))

    def last_tick(self, node: str) -> datetime | None:
        row = self.conn.execute("select at from tick where node = ?", (node,)).fetchone()
        return from_db(row[0]) if row else None

    def last_ticks(self) -> dict[str, datetime]:
        return {r[0]: from_db(r[1]) for r in self._query("select node, at from tick")}

    # -- run history -----------------------------------------------------------------

    def list_runs(self, task_id: int | None = None, limit: int = 50,
                  status: str | None = None, task_name: str | None = None) -> list[Run]:
        """The run history, newest first; ``task_name``: the kept runs of a deleted task."""
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
        where = f" where {' and '.join(clauses)}" if clauses else ""
        rows = self._query(f"{_RUN_SELECT}{where} order by run.id desc limit ?",
                           (*params, limit))
        return [_run(row) for row in rows]

    def get_run(self, run_id: int) -> Run:
        rows = self._query(f"{_RUN_SELECT} where run.id = ?", (run_id,))
        if not rows:
            raise NotFound(f"run {run_id} not found", field="id")
        return _run(rows[0])

    def count_runs(self, since: datetime, statuses: Iterable[str]) -> int:
        statuses = tuple(statuses)
        return self._query(
            f"select count(*) from run where start_at >= ? and status in"
            f" ({','.join('?' * len(statuses))})", (to_db(since), *statuses))[0][0]

    def run_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._query(
            "select status, count(*) from run group by status")}

    def delete_runs_before(self, before: datetime) -> int:
        """Delete finished runs that started before ``before``; returns how many."""
        with self._write():
            return self.conn.execute("delete from run where start_at < ? and status != 'running'",
                                     (to_db(before),)).rowcount

    # -- counters, stats, settings, audit --------------------------------------------

    def change_counter(self, name: str, by: int) -> int:
        """Add ``by`` (may be negative) to a counter, creating it at 0; returns the new value."""
        with self._write():
            return self.conn.execute(
                "insert into counter (name, value) values (?, ?) on conflict (name)"
                " do update set value = value + excluded.value returning value",
                (name, by)).fetchone()[0]

    def set_counter(self, name: str, value: int) -> None:
        with self._write():
            self.conn.execute("insert into counter (name, value) values (?, ?) on conflict"
                              " (name) do update set value = excluded.value", (name, value))

    def get_counter(self, name: str) -> int | None:
        row = self.conn.execute("select value from counter where name = ?", (name,)).fetchone()
        return row[0] if row else None

    def list_counters(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._query("select name, value from counter order by name")}

    def add_stat(self, key: str, at: datetime, value: int) -> None:
        with self._write():
            self.conn.execute("insert into stat (key, at, value) values (?, ?, ?)",
                              (key, to_db(at), value))

    def stat_keys(self) -> list[str]:
        return [r[0] for r in self._query("select distinct key from stat order by key")]

    def get_stats(self, key: str, start: datetime | None = None,
                  end: datetime | None = None) -> list[tuple[datetime, int]]:
        """The time series of ``key`` between ``start`` and ``end`` (inclusive), oldest first."""
        rows = self._query("select at, value from stat where key = ? and at >= ? and at <= ?"
                           " order by at, id",
                           (key, to_db(start) if start else "", to_db(end) if end else "~"))
        return [(from_db(r[0]), r[1]) for r in rows]

    def latest_stats(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._query(
            "select key, value from stat where id in (select max(id) from stat group by key)")}

    def delete_stats(self, key: str | None = None, before: datetime | None = None) -> int:
        """Delete the stats of ``key`` (all keys if None), or only those before ``before``."""
        with self._write():
            return self.conn.execute(
                "delete from stat where (? is null or key = ?) and at < ?",
                (key, key, to_db(before) if before else "~")).rowcount

    def count_tasks(self, active: bool | None = None) -> int:
        """How many tasks exist; only the active (or inactive) ones if ``active`` is given."""
        return self._query("select count(*) from task where ? is null or active = ?",
                           (active, active))[0][0]

    def get_setting(self, key: str) -> str | None:
        row = self.conn.execute("select value from setting where key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self._write():
            self.conn.execute("insert into setting (key, value) values (?, ?) on conflict (key)"
                              " do update set value = excluded.value", (key, value))

    def delete_setting(self, key: str) -> bool:
        """Remove a setting; False if it was not set."""
        with self._write():
            return self.conn.execute("delete from setting where key = ?", (key,)).rowcount > 0

    def list_audit(self, limit: int = 100) -> list[AuditEntry]:
        rows = self._query("select * from audit order by id desc limit ?", (limit,))
        return [AuditEntry(id=r["id"], at=from_db(r["at"]), actor=r["actor"],
                           action=r["action"], task_id=r["task_id"], detail=r["detail"])
                for r in rows]

    def _audit(self, now: datetime, actor: str, action: str, task_id: int | None,
               detail: str) -> None:
        self.conn.execute("insert into audit (at, actor, action, task_id, detail)"
                          " values (?, ?, ?, ?, ?)", (to_db(now), actor, action, task_id, detail))

    # -- plumbing --------------------------------------------------------------------

    def _write(self):
        return transaction(self.conn)

    def _query(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as error:
            raise storage_error(error) from None


_DEFINITION_COLUMNS = ("name", "active", "ordering", "interval", "timezone", "taskmodule",
                       "retry_if_failed", "max_retries", "timeout")


def _definition_values(spec: TaskSpec) -> dict:
    """The task table's definition columns (fixed names, never from input) and values."""
    return {column: getattr(spec, column) for column in _DEFINITION_COLUMNS}


@contextmanager
def _name_must_be_free(name: str):
    try:
        yield
    except sqlite3.IntegrityError:
        raise Conflict(f"name: a task named {name!r} already exists", field="name") from None


def _per_node(column: str, where: str = "") -> str:
    return (f"(select json_group_object(node, {column}) from (select node, {column}"
            f" from task_node where task_id = t.id{where} order by position))")


# The SQL twin of Task.to_json (tests/test_store_json.py keeps the two equal).
_TASK_JSON = (
    "select json_object('id', t.id, 'name', t.name,"
    " 'active', json(iif(t.active, 'true', 'false')), 'ordering', t.ordering,"
    " 'interval', t.interval, 'timezone', t.timezone,"
    " 'nodes', (select json_group_array(node) from (select node from task_node"
    " where task_id = t.id order by position)),"
    " 'taskmodule', t.taskmodule,"
    " 'options', (select json_group_object(key, value) from (select key, value"
    " from task_option where task_id = t.id order by key)),"
    " 'retry_if_failed', json(iif(t.retry_if_failed, 'true', 'false')),"
    " 'max_retries', t.max_retries, 'timeout', t.timeout, 'last_update', t.last_update,"
    f" 'last_runs', {_per_node('last_run_at', ' and last_run_at is not null')},"
    f" 'next_runs', {_per_node('next_run_at')},"
    f" 'last_status', {_per_node('last_status', ' and last_status is not null')},"
    f" 'failure_streak', {_per_node('failure_streak')}) from task t")

_RUN_SELECT = ("select run.*, coalesce(task.name, run.task_name) as name from run"
               " left join task on task.id = run.task_id")


def _run(row: sqlite3.Row) -> Run:
    return Run(id=row["id"], task_id=row["task_id"], task=row["name"], node=row["node"],
               trigger=row["trigger"], status=row["status"], start=from_db(row["start_at"]),
               end=from_db(row["end_at"]), duration=row["duration"], message=row["message"])
