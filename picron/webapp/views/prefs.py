"""The viewer's preferences: the time zone the page shows times in (a cookie)."""
from __future__ import annotations

from picron.errors import ValidationError
from picron.schedule import get_zone
from functools import lru_cache
from zoneinfo import available_timezones

from picron.webapp.base import Raw, Request, Response, redirect, render, template
from picron.webapp.context import Context
from picron.webapp.layout import csrf_field, page
from picron.webapp.login import cookie, safe_next

ZONE_COOKIE = "picron_zone"
ZONE_MAX_AGE = 365 * 86400
_ZONE = template("prefs_zone.html")


def viewer_zone(req: Request):
    """The zone named by the request's ``picron_zone`` cookie, or None (the server's)."""
    name = req.cookies.get(ZONE_COOKIE)
    if not name or len(name) > 64:
        return None
    try:
        return get_zone(name)
    except ValidationError:  # an unknown name is ignored, not an error page
        return None


def zone_form(ctx: Context, req: Request) -> Response:
    """GET /zone: the form that chooses the zone the page shows times in."""
    return page(ctx, req, "Time zone", render(
        _ZONE, csrf=csrf_field(req), next=safe_next(req.arg("next")),
        zone=str(ctx.chosen_zone or ""), server=str(ctx.zone), zones=_zone_options()))


@lru_cache(maxsize=1)
def _zone_options() -> Raw:
    return Raw("".join(render('<option value="$z">', z=zone)
                       for zone in sorted(available_timezones())))


def choose_zone(ctx: Context, req: Request) -> Response:
    """POST /zone: show times in another zone from now on; 400 naming ``zone`` if unknown;
    an empty name goes back to the server's zone."""
    name = (req.field("zone") or "").strip()
    if name:
        get_zone(name[:64])
    target = safe_next(req.field("next"))
    response = redirect(target + ("&" if "?" in target else "?") + "done=zone")
    response.cookies.append(cookie(ZONE_COOKIE, name, max_age=ZONE_MAX_AGE if name else 0))
    return response
