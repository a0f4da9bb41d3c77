"""Notifications (SPEC §7): a task's down/up changes per node, sent by webhook and mail.

The change is decided from the state the store saw when it recorded the run (so two
processes never both announce it); each destination is tried in its own thread and waited
for at most the timeout; nothing here raises into the runner: what could not be delivered
is logged and described, and the run keeps its status.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from urllib.parse import urlsplit

from picron import __version__
from picron.config import smtp_address
from picron.errors import PicronError
from picron.records import Finished
from picron.storage import Store

DOWN, UP = "down", "up"
TIMEOUT_SECONDS = 5.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The config's destinations (a task's own fields override them), and the time bound."""

    url: str | None = None
    email: str | None = None
    smtp_host: str = "localhost"
    mail_from: str | None = None
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def from_config(cls, config) -> Settings:
        return cls(url=config.notify_url, email=config.notify_email,
                   smtp_host=config.smtp_host, mail_from=config.mail_from)


def notify_run(store: Store, finished: Finished, settings: Settings, now: datetime) -> str:
    """Record and deliver the down/up event a run caused, if any (SPEC §7); never raises.

    ``finished`` is what ``Store.finish_run`` returned: the node's state before the run, as
    the finishing transaction saw it, so each change is announced once. Returns "" or one
    line saying what could not be delivered, which is also added to the run's message.
    """
    if finished.before is None:  # the task was deleted meanwhile
        return ""
    change = state_change(finished.before[0], finished.status, finished.before[1])
    if change is None:
        return ""
    event, streak = change
    try:
        run = store.get_run(finished.run_id)
        task = store.get_task(run.task_id)
        event_id = store.add_event(now, event, task.id, task.name, run.node, run.id, streak)
    except PicronError as error:  # e.g. the task was deleted meanwhile, a busy database
        logger.warning("notification %r of run %d not recorded: %s", event, finished.run_id,
                       error.message)
        return ""
    notice = Notice(event=event, task=task.name, task_id=task.id, node=run.node,
                    run=run.to_json(), failure_streak=streak)
    delivery = deliver(notice, url=destination(task.notify_url, settings.url),
                       email=destination(task.notify_email, settings.email),
                       smtp_host=settings.smtp_host, mail_from=settings.mail_from,
                       timeout=settings.timeout)
    note = f"notification {event!r} not delivered: {delivery.trouble}" if delivery.trouble else ""
    try:
        store.mark_event_delivered(event_id, delivery.delivered, delivery.detail)
        if note:
            store.append_run_message(run.id, note)
    except PicronError as error:
        logger.warning("notification %r of run %d: %s", event, run.id, error.message)
    return note


def state_change(previous: str | None, status: str, streak: int) -> tuple[str, int] | None:
    """The event a finished run causes on its node, with its ``failure_streak``, or None.

    ``previous`` is the status of the previous finished run of the task on that node (None:
    there was none) and ``streak`` the failed runs in a row before this one. "down": this
    run failed (any failure, retried or not) and the previous one succeeded or there was
    none - streak 1; "up": this run succeeded and the previous one failed - the streak that
    just ended. Anything else changes nothing, so a task failing at every tick notifies once.
    """
    if status != "success":
        return (DOWN, 1) if previous in (None, "success") else None
    if previous not in (None, "success"):
        return (UP, streak)
    return None


def destination(own: str | None, default: str | None) -> str | None:
    """Where a task's notifications go: its own field, else the config's (SPEC §7).

    ``own`` None means "the config's", ``""`` means "none for this task".
    """
    value = default if own is None else own
    return value or None


@dataclass(frozen=True)
class Notice:
    """One down/up event to deliver: the SPEC §7 payload."""

    event: str
    task: str
    task_id: int
    node: str
    run: dict
    failure_streak: int

    def payload(self) -> dict:
        return {"event": self.event, "task": self.task, "task_id": self.task_id,
                "node": self.node, "run": self.run, "failure_streak": self.failure_streak}


@dataclass(frozen=True)
class Delivery:
    """What became of a notice: per destination, None (accepted) or what went wrong."""

    results: tuple[tuple[str, str | None], ...]

    @property
    def delivered(self) -> bool:
        """True when there was a destination and every one accepted the notice."""
        return bool(self.results) and all(error is None for _, error in self.results)

    @property
    def detail(self) -> str:
        if not self.results:
            return "no destination configured"
        return "; ".join(f"{where}: {error or 'delivered'}" for where, error in self.results)

    @property
    def trouble(self) -> str:
        """The failures alone, one line ("" when there were none)."""
        return "; ".join(f"{where}: {error}" for where, error in self.results if error)


def deliver(notice: Notice, *, url: str | None, email: str | None,
            smtp_host: str = "localhost", mail_from: str | None = None,
            timeout: float = TIMEOUT_SECONDS) -> Delivery:
    """Send ``notice`` to the webhook ``url`` and/or the address ``email``; never raises.

    Both are sent at once, each in a daemon thread, and waited for at most ``timeout``
    seconds in all: a receiver that hangs costs the caller no more than that. Failures are
    logged as warnings (stderr even for ``run_scheduled -c``) and returned.
    """
    jobs: dict[str, Callable[[], None]] = {}
    if url:
        jobs[f"webhook {_url_origin(url)}"] = lambda: post_webhook(url, notice, timeout)
    if email:
        jobs[f"mail to {email}"] = lambda: send_mail(email, notice, smtp_host, mail_from,
                                                      timeout)
    delivery = Delivery(_run_bounded(jobs, timeout))
    if delivery.trouble:
        logger.warning("notification %r of task %r on %s not delivered: %s",
                       notice.event, notice.task, notice.node, delivery.trouble)
    return delivery


def post_webhook(url: str, notice: Notice, timeout: float = TIMEOUT_SECONDS) -> None:
    """POST the JSON payload to ``url``; raises unless the answer is 2xx (no redirects)."""
    # Imported here, not at the top: every tick that ran a task imports this module for
    # state_change, and most of them have nothing to send.
    import json
    import urllib.error
    import urllib.request

    from picron.modules.http import split_url

    target, authorization = split_url(url)
    request = urllib.request.Request(
        target, method="POST", data=json.dumps(notice.payload()).encode(),
        headers={"Content-Type": "application/json", "User-Agent": f"picron/{__version__}"})
    if authorization:
        request.add_unredirected_header("Authorization", authorization)
    try:
        with _opener().open(request, timeout=timeout) as response:
            response.read(4096)
    except urllib.error.HTTPError as error:
        error.close()
        raise


def send_mail(address: str, notice: Notice, smtp_host: str = "localhost",
              mail_from: str | None = None, timeout: float = TIMEOUT_SECONDS) -> None:
    """Send a short plain-text mail about ``notice`` through ``smtp_host`` (``host[:port]``).

    The sender is ``mail_from``, else ``picron@`` the host name. Raises ``OSError`` or an
    ``smtplib.SMTPException`` when the server cannot be reached or refuses the mail.
    """
    import smtplib  # imported when sending, as urllib in post_webhook
    from email.message import EmailMessage
    from email.utils import formatdate

    sender = mail_from or f"picron@{os.uname().nodename}"
    message = EmailMessage()
    message["Subject"] = _subject(notice)
    message["From"] = sender
    message["To"] = address
    message["Date"] = formatdate(usegmt=True)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content(mail_text(notice))
    host, port = smtp_address(smtp_host)
    with smtplib.SMTP(host, port, timeout=timeout) as smtp:
        smtp.send_message(message, sender, [address])


def mail_text(notice: Notice) -> str:
    """The body of a notification mail: what changed, and the run that changed it."""
    run = notice.run
    if notice.event == DOWN:
        headline = f"Task {notice.task!r} is DOWN on node {notice.node} (run {run['status']})."
    else:
        runs = "run" if notice.failure_streak == 1 else "runs"
        headline = (f"Task {notice.task!r} is UP again on node {notice.node}, after "
                    f"{notice.failure_streak} failed {runs}.")
    lines = [headline, "",
             f"Run {run['id']} ({run['trigger']}): {run['status']}",
             f"started {run['start']}, ended {run['end']}"]
    if run.get("message"):
        lines += ["", run["message"]]
    return "\n".join(lines) + "\n"


def _subject(notice: Notice) -> str:
    state = "DOWN" if notice.event == DOWN else "UP again"
    return f"picron: {notice.task} is {state} on {notice.node}"


def _url_origin(url: str) -> str:
    """scheme://host[:port] only: a webhook's path or credentials are often its secret."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


@cache
def _opener():
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        """Stops at a redirect (reported as its HTTP status): a POST must not become a GET."""

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None

    return urllib.request.build_opener(NoRedirects)


def _run_bounded(jobs: dict[str, Callable[[], None]],
                 timeout: float) -> tuple[tuple[str, str | None], ...]:
    results: dict[str, str | None] = {}

    def run(name: str, job: Callable[[], None]) -> None:
        try:
            job()
            results[name] = None
        except Exception as error:  # any failure to deliver is reported, never raised
            results[name] = _describe(error, timeout)

    threads = [threading.Thread(target=run, args=item, name=f"picron-notify {item[0]}",
                                daemon=True) for item in jobs.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))
    timed_out = f"timed out after {timeout:g} s"
    return tuple((name, results.get(name, timed_out)) for name in jobs)


def _describe(error: Exception, timeout: float) -> str:
    import smtplib
    import urllib.error

    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        error = error.reason if isinstance(error.reason, Exception) else error
    if isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(error.recipients.values()))
        return f"recipient refused: SMTP {code} {text.decode('utf-8', 'replace')}"
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        return f"SMTP {error.smtp_code} {text}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
