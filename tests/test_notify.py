"""Notifications (SPEC §7): the down/up decision, and delivery to a real HTTP receiver and a
real SMTP server on 127.0.0.1 (no mocks of urllib or smtplib)."""
from __future__ import annotations

import base64
import email
import email.policy
import json
import logging
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picron.config import load_config
from picron.errors import ConfigError
from picron.notify import DOWN, UP, Notice, deliver, destination, state_change

RUN = {"id": 7, "task_id": 3, "task": "nightly <backup>", "node": "node1",
       "trigger": "scheduled", "status": "failed", "start": "2026-01-01T00:00:00+00:00",
       "end": "2026-01-01T00:00:02+00:00", "duration": 2.0, "message": "disk full"}
NOTICE = Notice(event=DOWN, task="nightly <backup>", task_id=3, node="node1", run=RUN,
                failure_streak=1)


# -- real receivers ----------------------------------------------------------------------

class HttpReceiver:
    """A real HTTP server on 127.0.0.1 that records what is POSTed to it.

    ``mode``: "ok" answers 204, "error" 500, "redirect" 302, "hang" never answers, and
    "trickle" sends its answer one byte every 0.2 s (each read is quick, the whole is not).
    """

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[tuple[dict, bytes]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                elif receiver.mode == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                        if receiver.release.wait(0.2):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                else:
                    status = {"ok": 204, "error": 500, "redirect": 302}[receiver.mode]
                    self.send_response(status)
                    self.send_header("Location", f"{receiver.url}/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    """A real (minimal) SMTP server on 127.0.0.1 that keeps the mails it accepts.

    It speaks what ``smtplib`` needs: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT;
    ``refuse`` makes it refuse every recipient with 550.
    """

    def __init__(self, refuse: bool = False) -> None:
        self.mails: list[tuple[str, list[str], email.message.EmailMessage]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                sender, recipients = None, []
                self.say("220 sink ESMTP")
                while line := self.rfile.readline():
                    verb = line[:4].decode("ascii", "replace").upper()
                    argument = line[line.find(b":") + 1:].strip().strip(b"<>").decode()
                    if verb == "EHLO":
                        self.say("250-sink", "250-8BITMIME", "250 SMTPUTF8")
                    elif verb == "MAIL":
                        sender, recipients = argument.split(">")[0], []
                        self.say("250 ok")
                    elif verb == "RCPT":
                        if refuse:
                            self.say("550 no such user here")
                        else:
                            recipients.append(argument)
                            self.say("250 ok")
                    elif verb == "DATA":
                        self.say("354 go on")
                        data = b"".join(iter(self.read_data_line, None))
                        sink.mails.append((sender, recipients, email.message_from_bytes(
                            data, policy=email.policy.default)))
                        self.say("250 queued")
                    elif verb == "QUIT":
                        self.say("221 bye")
                        return
                    else:  # HELO, RSET, NOOP
                        self.say("250 ok")

            def read_data_line(self):
                line = self.rfile.readline()
                if line in (b".\r\n", b""):
                    return None
                return line[1:] if line.startswith(b"..") else line

            def say(self, *lines):
                self.wfile.write("".join(f"{line}\r\n" for line in lines).encode())

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(request):
    server = HttpReceiver(getattr(request, "param", "ok"))
    yield server
    server.close()


@pytest.fixture
def sink():
    server = SmtpSink()
    yield server
    server.close()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the decision ------------------------------------------------------------------------

@pytest.mark.parametrize("previous, status, streak, expected", [
    (None, "failed", 0, (DOWN, 1)),            # the first run ever fails
    ("success", "timeout", 0, (DOWN, 1)),      # any failure counts
    ("success", "interrupted", 0, (DOWN, 1)),
    ("failed", "failed", 1, None),             # still down: no second notice
    ("timeout", "interrupted", 4, None),
    ("failed", "success", 3, (UP, 3)),         # the streak that just ended
    ("interrupted", "success", 1, (UP, 1)),
    ("success", "success", 0, None),
    (None, "success", 0, None),                # never down, so never "up"
])
def test_state_change(previous, status, streak, expected):
    assert state_change(previous, status, streak) == expected


@given(st.lists(st.sampled_from(["success", "failed", "timeout", "interrupted"]), max_size=40))
def test_one_notice_per_change(statuses):
    """Replaying any history the way the store keeps it: down and up alternate, starting
    with down, one per change of state, each up carrying the length of the failure run."""
    previous, streak, events, changes = None, 0, [], 0
    for status in statuses:
        failed = status != "success"
        was_failing = previous is not None and previous != "success"
        changes += failed != was_failing
        change = state_change(previous, status, streak)
        if change:
            events.append(change)
            if change[0] == UP:
                assert change[1] == streak
        previous, streak = status, streak + 1 if failed else 0
    assert len(events) == changes
    assert [event for event, _ in events] == [DOWN, UP] * (len(events) // 2) + [DOWN] * (
        len(events) % 2)
    assert all(count == 1 for event, count in events if event == DOWN)


@pytest.mark.parametrize("own, default, expected", [
    (None, "https://hooks.example/x", "https://hooks.example/x"),  # null: the config's
    ("", "https://hooks.example/x", None),                         # "": none for this task
    ("https://own.example/", "https://hooks.example/x", "https://own.example/"),
    (None, None, None),
])
def test_destination(own, default, expected):
    assert destination(own, default) == expected


# -- the webhook -------------------------------------------------------------------------

def test_webhook_posts_the_payload(receiver):
    delivery = deliver(NOTICE, url=f"{receiver.url}/hook/s3cret", email=None)
    assert delivery.delivered
    assert delivery.detail == f"webhook {receiver.url}: delivered"
    [(headers, body)] = receiver.requests
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"event": "down", "task": "nightly <backup>", "task_id": 3,
                                "node": "node1", "run": RUN, "failure_streak": 1}


def test_webhook_credentials_become_basic_auth_and_stay_out_of_the_detail(receiver):
    port = receiver.url.rsplit(":", 1)[1]
    delivery = deliver(NOTICE, url=f"http://hook:pa55@127.0.0.1:{port}/t0ken", email=None)
    assert delivery.delivered
    [(headers, _)] = receiver.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"hook:pa55").decode()
    assert "pa55" not in delivery.detail and "t0ken" not in delivery.detail


@pytest.mark.parametrize("receiver", ["error"], indirect=True)
def test_webhook_answering_500_is_not_delivered_and_logged(receiver, caplog):
    with caplog.at_level(logging.WARNING, logger="picron.notify"):
        delivery = deliver(NOTICE, url=receiver.url, email=None)
    assert not delivery.delivered
    assert delivery.trouble == f"webhook {receiver.url}: HTTP 500 Internal Server Error"
    assert "HTTP 500" in caplog.text and "nightly <backup>" in caplog.text
    assert len(receiver.requests) == 1  # tried once, not retried


@pytest.mark.parametrize("receiver", ["redirect"], indirect=True)
def test_webhook_redirect_is_not_followed(receiver):
    delivery = deliver(NOTICE, url=receiver.url, email=None)
    assert not delivery.delivered
    assert "HTTP 302" in delivery.trouble
    assert len(receiver.requests) == 1


def test_webhook_refused_connection(closed_port):
    delivery = deliver(NOTICE, url=f"http://127.0.0.1:{closed_port}/", email=None)
    assert not delivery.delivered
    assert delivery.trouble == f"webhook http://127.0.0.1:{closed_port}: connection refused"


def test_webhook_unreachable_listener_times_out():
    """A listener that never accepts: the connection is queued, no answer ever comes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        delivery = deliver(NOTICE, url=url, email=None, timeout=0.5)
    assert delivery.trouble.endswith(": timed out after 0.5 s")


@pytest.mark.parametrize("receiver", ["hang", "trickle"], indirect=True)
def test_webhook_that_hangs_or_trickles_is_cut_at_the_timeout(receiver):
    """A trickling answer resets the socket timeout at every byte; the bound still holds."""
    delivery = deliver(NOTICE, url=receiver.url, email=None, timeout=0.5)
    assert not delivery.delivered
    assert delivery.trouble == f"webhook {receiver.url}: timed out after 0.5 s"


# -- the mail ----------------------------------------------------------------------------

def test_mail_through_the_smtp_server(sink):
    delivery = deliver(NOTICE, url=None, email="ops@example.org", smtp_host=sink.host,
                       mail_from="picron@example.org")
    assert delivery.delivered, delivery.detail
    assert delivery.detail == "mail to ops@example.org: delivered"
    [(sender, recipients, mail)] = sink.mails
    assert (sender, recipients) == ("picron@example.org", ["ops@example.org"])
    assert mail["From"] == "picron@example.org" and mail["To"] == "ops@example.org"
    assert mail["Subject"] == "picron: nightly <backup> is DOWN on node1"
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content()
    assert "Task 'nightly <backup>' is DOWN on node node1 (run failed)." in body
    assert "disk full" in body


def test_mail_up_names_the_streak(sink):
    run = dict(RUN, status="success", message="")
    notice = Notice(event=UP, task="t", task_id=3, node="n", run=run, failure_streak=4)
    assert deliver(notice, url=None, email="ops@example.org", smtp_host=sink.host).delivered
    [(sender, _, mail)] = sink.mails
    assert sender.startswith("picron@")  # mail_from unset: picron@ this host
    assert mail["Subject"] == "picron: t is UP again on n"
    assert "is UP again on node n, after 4 failed runs." in mail.get_content()


def test_mail_recipient_refused():
    sink = SmtpSink(refuse=True)
    try:
        delivery = deliver(NOTICE, url=None, email="nobody@example.org", smtp_host=sink.host)
    finally:
        sink.close()
    assert delivery.trouble == ("mail to nobody@example.org: recipient refused: "
                                "SMTP 550 no such user here")
    assert sink.mails == []


def test_mail_without_an_smtp_server(closed_port):
    delivery = deliver(NOTICE, url=None, email="ops@example.org",
                       smtp_host=f"127.0.0.1:{closed_port}")
    assert delivery.trouble == "mail to ops@example.org: connection refused"


def test_mail_server_that_never_greets_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        delivery = deliver(NOTICE, url=None, email="ops@example.org", timeout=0.5,
                           smtp_host=f"127.0.0.1:{silent.getsockname()[1]}")
    assert delivery.trouble == "mail to ops@example.org: timed out after 0.5 s"


# -- both, or none ------------------------------------------------------------------------

@pytest.mark.parametrize("receiver", ["hang"], indirect=True)
def test_a_hanging_webhook_does_not_hold_up_the_mail(receiver, sink):
    delivery = deliver(NOTICE, url=receiver.url, email="ops@example.org",
                       smtp_host=sink.host, timeout=0.5)
    assert delivery.detail == (f"webhook {receiver.url}: timed out after 0.5 s; "
                               "mail to ops@example.org: delivered")
    assert delivery.trouble == f"webhook {receiver.url}: timed out after 0.5 s"
    assert len(sink.mails) == 1


def test_no_destination():
    delivery = deliver(NOTICE, url=None, email=None)
    assert not delivery.delivered
    assert delivery.detail == "no destination configured"
    assert delivery.trouble == ""


# -- configuration ------------------------------------------------------------------------

def test_config_keys(tmp_path):
    path = tmp_path / "picron.toml"
    path.write_text('notify_url = "https://hooks.example/x"\nnotify_email = "ops@example.org"\n'
                    'smtp_host = "mail.example.org:587"\nmail_from = "cron@example.org"\n')
    config = load_config(str(path), env={"PICRON_NODE": "n"})
    assert (config.notify_url, config.notify_email, config.smtp_host, config.mail_from) == (
        "https://hooks.example/x", "ops@example.org", "mail.example.org:587",
        "cron@example.org")
    defaults = load_config(None, env={"PICRON_NODE": "n", "PICRON_CONFIG": ""})
    assert (defaults.notify_url, defaults.notify_email, defaults.smtp_host,
            defaults.mail_from) == (None, None, "localhost", None)


@pytest.mark.parametrize("line, key", [
    ('notify_url = "ftp://example.org/"', "notify_url"),
    ('notify_url = "hooks.example.org"', "notify_url"),
    ('notify_email = "not an address"', "notify_email"),
    ('notify_email = 5', "notify_email"),
    ('mail_from = "a@b@c"', "mail_from"),
    ('smtp_host = "mail:99999"', "smtp_host"),
    ('smtp_host = "mail:"', "smtp_host"),
])
def test_config_invalid_keys(tmp_path, line, key):
    path = tmp_path / "picron.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as error:
        load_config(str(path), env={"PICRON_NODE": "n"})
    assert key in error.value.message and str(path) in error.value.message
    assert error.value.exit_code == 3


def test_deliver_returns_within_the_timeout_even_when_threads_linger(receiver):
    """The caller is released at the deadline; the thread finishes on its own later."""
    receiver.mode = "hang"
    before = threading.active_count()
    delivery = deliver(NOTICE, url=receiver.url, email=None, timeout=0.2)
    assert delivery.trouble.endswith("timed out after 0.2 s")
    receiver.release.set()  # the receiver answers nothing and closes: the thread ends
    deadline = time.monotonic() + 30
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
