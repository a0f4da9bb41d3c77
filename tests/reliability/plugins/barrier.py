"""``python barrier.py READY GO ARGS...``: ``picron ARGS...``, started together with others.

Imports picron, creates READY, waits until GO exists, then runs ``picron.cli.main`` - so
that many processes hit the database at the same instant (RELIABILITY R1).
"""
import os
import select
import sys

from picron.cli import main

ready, go, args = sys.argv[1], sys.argv[2], sys.argv[3:]
open(ready, "w").close()
while not os.path.exists(go):
    select.select([], [], [], 0.002)  # not time.sleep: see conftest.py about libfaketime
raise SystemExit(main(args))
