"""Server time of the web pages at 1,000 tasks, in process (``Site.handle``, no sockets).

``python benchmarks/webpages.py [--profile PATH]`` prints the median and range of each
page's and API answer's server time on a database of 1,000 tasks with history, and, with
``--profile``, where the list page's time goes. Side by side with a bare
``http.server`` answering a static page (``webload.py``), this is the server's own part.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fixtures import build_database  # noqa: E402

from picron.app import App  # noqa: E402
from picron.config import Config  # noqa: E402
from picron.webapp.base import Request  # noqa: E402
from picron.webapp.login import api_token  # noqa: E402
from picron.webapp import context  # noqa: E402
from picron.webapp.site import Site  # noqa: E402
from picron.webapp.views import tasks  # noqa: E402

PATHS = ("/", "/api/tasks", "/history", "/?q=task-1&state=failing", "/api/runs?limit=100")
ROUNDS = 40


def site_on(tasks: int, directory: str) -> tuple[Site, str]:
    database = build_database(os.path.join(directory, f"{tasks}.db"), tasks)
    app = App(Config(database=database, node="node1", nodes=("node1",)))
    return Site(app), "Bearer " + api_token(app.store)


def server_time(site: Site, auth: str, target: str, cold: bool = False) -> float:
    if cold:
        context._CACHE.clear()  # noqa: SLF001 - a benchmark of the miss
        tasks._ROWS.clear()  # noqa: SLF001
    path, _, query = target.partition("?")
    request = Request("GET", path, parse_qs(query), {"host": "127.0.0.1",
                                                     "authorization": auth})
    started = time.perf_counter()
    response = site.handle(request)
    elapsed = time.perf_counter() - started
    assert response.status == 200, (target, response.status, response.body[:300])
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", help="write the list page's profile here")
    parser.add_argument("--tasks", default="1000,10", help="task counts, comma-separated")
    parser.add_argument("--cold", action="store_true",
                        help="empty the web's caches before every request (the cost of a miss)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        for tasks in (int(n) for n in args.tasks.split(",")):
            site, auth = site_on(tasks, directory)
            for target in PATHS:
                for _ in range(3):
                    server_time(site, auth, target)
                times = [server_time(site, auth, target, args.cold) for _ in range(ROUNDS)]
                print(f"{tasks:>6} tasks  GET {target:<28} median "
                      f"{statistics.median(times) * 1000:6.1f} ms  "
                      f"({min(times) * 1000:.1f}–{max(times) * 1000:.1f})")
            if args.profile and tasks == 1000:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(ROUNDS):
                    server_time(site, auth, "/")
                profile.disable()
                profile.dump_stats(args.profile)
                pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
