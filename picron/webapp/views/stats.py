"""The monitoring stats: the keys, one key's chart, the event counters."""
from __future__ import annotations

from urllib.parse import quote

from picron.errors import NotFound
from picron.webapp.context import Context
from picron.webapp.base import Raw, Request, Response, render
from picron.webapp.charts import line_chart
from picron.webapp.layout import page

def stats_index(ctx: Context, req: Request) -> Response:
    """The monitoring stats keys (each links to its chart) and the event counters."""
    latest = ctx.store.latest_stats()
    keys = Raw("".join(render('<li><a href="/stats/$href">$key</a> <span class="muted">'
                              'latest $value</span></li>\n', href=quote(key, safe=""),
                              key=key, value=latest.get(key, "-"))
                       for key in ctx.store.stat_keys()))
    counters = Raw("".join(render('<tr><td data-label="Counter">$name</td><td data-label="Value" '
                                  'class="num">$value</td></tr>\n',
                                  name=name, value=value)
                           for name, value in ctx.store.list_counters().items()))
    body = render(
        "<h1>Monitoring stats</h1>\n$keys\n<h2>Event counters</h2>\n$counters",
        keys=render('<ul class="keys">\n$items</ul>', items=keys) if keys else
        Raw('<p class="empty">No stats recorded yet: a <code>simplestats</code> or '
            '<code>eventcounter</code> task writes them.</p>'),
        counters=render('<table class="counters"><thead><tr><th>Counter</th><th>Value</th>'
                        '</tr></thead>\n<tbody>\n$rows</tbody></table>', rows=counters)
        if counters else Raw('<p class="empty">No event counters yet.</p>'))
    return page(ctx, req, "Stats", body)


def stats_key(ctx: Context, req: Request, key: str) -> Response:
    """One key's time series as an SVG chart, and its latest values; 404 for no values."""
    series = ctx.store.get_stats(key)
    if not series:
        raise NotFound(f"no monitoring stats under key {key!r}", field="key")
    rows = Raw("".join(render('<tr><td data-label="Time">$at</td><td data-label="Value" '
                              'class="num">$value</td></tr>\n',
                              at=ctx.when(at), value=value)
                       for at, value in reversed(series[-20:])))
    body = render('<p class="crumbs"><a href="/stats">Stats</a> /</p>\n<h1>$key</h1>\n$chart\n'
                  '<h2>Latest values</h2>\n<table class="values"><thead><tr><th>Time</th>'
                  '<th>Value</th></tr></thead>\n<tbody>\n$rows</tbody></table>',
                  key=key, chart=line_chart(series, ctx.view_zone, key), rows=rows)
    return page(ctx, req, f"Stats: {key}", body)
