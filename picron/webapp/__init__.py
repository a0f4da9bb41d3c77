"""The web application behind ``picron serve`` (``picron/web.py`` holds the sockets).

Where things are:

* ``routes.py`` — the one routing table (pages and ``/api``), 404 vs 405 with ``Allow``;
* ``site.py`` — the request cycle: Host check, login, CSRF, body parsing, errors, headers;
* ``context.py`` — ``Context``, what a handler gets besides the request (typed), the
  store pool and the cache keyed by the data version;
* ``login.py`` — the admin password, the API token, sessions, login limits, login page;
* ``base.py`` — ``Request``, ``Response``, escaping ``render``, ``template`` files;
* ``views/`` — the handlers: ``tasks``, ``task_form``, ``history``, ``stats``, ``prefs``,
  ``static`` and the JSON ``api``; ``templates/`` — their HTML, apart from them;
* ``layout.py`` (page skeleton, dashboard line), ``times.py`` (every time on the page),
  ``filters.py`` (list and history filters), ``charts.py``, ``metrics.py``,
  ``background.py`` (manual runs on threads).
"""
