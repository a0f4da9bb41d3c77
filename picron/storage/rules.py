"""SQL shared by the store and the idle looks of every backend: each rule written once.

Plain strings with ``?`` placeholders, importing nothing, so that an idle cron tick can use
them without loading the store.
"""

# "Due" (SPEC §2 rule 3), over ``task_node`` rows: due_at is the next run (next_run_at)
# while the task is active and null while it is not; a failure that will be retried keeps
# its slot, so the task stays due. Parameters: node, now. The tick's claim, the list of due
# tasks (tick and dry run, ``next``, the list and the page show next_run_at) and the idle
# look all use this condition. Only a scheduled claim adds one more: the tick's mark
# (``Store.tick_mark``), so that an overlapping tick never retries a failure at once.
DUE = "task_node.node = ? and task_node.due_at <= ?"

# Anything for a full tick to do on a node: a run marked running (perhaps left behind by a
# dead process), a due task, or a last run in the future (the clock went back: warn).
# Parameters: node, now, node, now.
ANYTHING_TO_DO = (
    "select exists (select 1 from run where status = 'running')"
    f" or exists (select 1 from task_node where {DUE})"
    " or exists (select 1 from task_node where task_node.node = ?"
    " and task_node.last_run_at > ?)")

# Recording a cron tick (backs ``picron check``). Parameters: node, at.
TICK_UPSERT = ("insert into tick (node, at) values (?, ?)"
               " on conflict (node) do update set at = excluded.at")
