"""The one routing table of the web server: every page and every API path.

``ROUTES`` holds ``(method, compiled pattern, handler)``; a pattern must match the whole
path and its named groups become the handler's keyword arguments. ``resolve`` tells a
path nobody serves (404) from a method not served there (405 with ``Allow``), as
bottle's router does. ``PUBLIC`` handlers answer without a credential (SPEC §6).
"""
from __future__ import annotations

import re

from picron import openapi
from picron.errors import MethodNotAllowed, NotFound
from picron.webapp import login
from picron.webapp.views import api, history, prefs, stats, task_form, tasks
from picron.webapp.views.static import static_file

_PAGE_ID = r"(?P<task_id>[0-9]{1,18})"
_API_TASK = r"/api/tasks/(?P<task_id>[^/]+)"

ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in (
    # pages
    ("GET", r"/", tasks.task_list),
    ("GET", r"/tasks/new", task_form.new_task),
    ("POST", r"/tasks", task_form.create_task),
    ("POST", r"/tasks/bulk", tasks.bulk),
    ("GET", rf"/tasks/{_PAGE_ID}", tasks.task_page),
    ("GET", rf"/tasks/{_PAGE_ID}/edit", task_form.edit_task),
    ("GET", rf"/tasks/{_PAGE_ID}/clone", task_form.clone_task),
    ("POST", rf"/tasks/{_PAGE_ID}", task_form.save_task),
    ("GET", rf"/tasks/{_PAGE_ID}/delete", tasks.confirm_delete),
    ("POST", rf"/tasks/{_PAGE_ID}/delete", tasks.delete_task),
    ("POST", rf"/tasks/{_PAGE_ID}/enable", tasks.enable_task),
    ("POST", rf"/tasks/{_PAGE_ID}/disable", tasks.disable_task),
    ("POST", rf"/tasks/{_PAGE_ID}/run", tasks.run_task),
    ("GET", r"/history", history.history),
    ("GET", r"/runs/(?P<run_id>[0-9]{1,18})", history.run_page),
    ("GET", r"/events", history.events),
    ("GET", r"/audit", history.audit),
    ("GET", r"/zone", prefs.zone_form),
    ("POST", r"/zone", prefs.choose_zone),
    ("GET", r"/stats", stats.stats_index),
    ("GET", r"/stats/(?P<key>.+)", stats.stats_key),
    # login and files
    ("GET", r"/login", login.login_page),
    ("POST", r"/login", login.login),
    ("POST", r"/logout", login.logout),
    ("GET", r"/static/(?P<name>[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99})", static_file),
    # the JSON API (SPEC §6)
    ("GET", r"/api/tasks", api.list_tasks),
    ("POST", r"/api/tasks", api.create_task),
    ("GET", _API_TASK, api.get_task),
    ("PUT", _API_TASK, api.replace_task),
    ("PATCH", _API_TASK, api.patch_task),
    ("DELETE", _API_TASK, api.delete_task),
    ("POST", _API_TASK + "/enable", api.enable_task),
    ("POST", _API_TASK + "/disable", api.disable_task),
    ("POST", _API_TASK + "/run", api.run_task),
    ("GET", r"/api/runs", api.list_runs),
    ("GET", r"/api/runs/(?P<run_id>[^/]+)", api.get_run),
    ("GET", r"/api/events", api.list_events),
    ("GET", r"/api/modules", api.list_modules),
    ("GET", r"/api/nodes", api.get_nodes),
    ("GET", r"/api/counters", api.list_counters),
    ("POST", r"/api/counters/(?P<name>[^/]+)/increment", api.increment_counter),
    ("GET", r"/api/stats", api.list_stat_keys),
    ("GET", r"/api/stats/(?P<key>[^/]+)", api.get_stats),
    ("GET", r"/api/health", api.get_health),
    ("GET", r"/api/preview", api.preview),
    ("GET", r"/metrics", api.get_metrics),
    ("GET", r"/api/openapi\.json", openapi.get_document),
)]
PUBLIC = frozenset({login.login_page, login.login, static_file})


def resolve(routes, method: str, path: str):
    """``(handler, params)`` for a request; raises ``NotFound`` or ``MethodNotAllowed``."""
    wanted = "GET" if method == "HEAD" else method
    allowed = []
    for route_method, pattern, handler in routes:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        if route_method == wanted:
            return handler, match.groupdict()
        allowed.append(route_method)
    if allowed:
        if "GET" in allowed:
            allowed.append("HEAD")
        raise MethodNotAllowed(f"{method} is not allowed here",
                               allow=tuple(dict.fromkeys(allowed)))
    raise NotFound(f"no page at {path[:200]}")
