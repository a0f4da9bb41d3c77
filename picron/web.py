"""``picron serve``: the HTTP server around ``picron.site.Site``, its limits, and shutdown.

``http.server``'s defaults fail under load and abuse (a listen backlog of 5, no
timeouts, one thread per connection without limit, a trusted ``Content-Length``), so
this module sets every limit: backlog 128, at most ``MAX_CONNECTIONS`` connection
threads (more get 503 at once), ``REQUEST_TIMEOUT`` seconds to send a request's head
and again its body (a slowloris client is cut off however slowly it trickles), 1 MiB
bodies with an exact ``Content-Length``. SIGTERM stops accepting, lets requests in
flight finish (up to ``SHUTDOWN_GRACE`` seconds) and returns 0.
"""
from __future__ import annotations

import io
import ipaddress
import logging
import re
import signal
import socket
import socketserver
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from picron.auth import password_hash
from picron.errors import (ConfigError, LengthRequired, PayloadTooLarge, PicronError,
                           ValidationError)
from picron.site import SECURITY_HEADERS, Site, is_api, parse_target, printable
from picron.webcore import Request, Response

logger = logging.getLogger(__name__)

MAX_BODY = 1 << 20
REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 256  # room for 200 stalled clients (W2) plus the real ones
SHUTDOWN_GRACE = 5.0
LINGER_SECONDS = 1.0
SCHEDULER_PERIOD = 60.0
_LISTEN = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<port6>[0-9]{1,5})"
                     r"|(?P<host>[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` as (host, port); raises ``ValidationError``."""
    match = _LISTEN.fullmatch(text.strip())
    port = match and int(match["port"] or match["port6"])
    if not match or port > 65535:
        raise ValidationError(f"listen: {text!r} is not HOST:PORT (for example 127.0.0.1:8080 "
                              "or [::1]:8080)", field="listen")
    return match["v6"] or match["host"], port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


class _DeadlineReader(io.RawIOBase):
    """Socket reads that fail once ``deadline`` (``time.monotonic()``) has passed.

    A per-read timeout alone never fires for a client sending a byte every few seconds.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + REQUEST_TIMEOUT

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client took too long to send its request")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    """The thin adapter: bytes in, ``Request`` → ``Site.handle`` → ``Response``, bytes out."""

    server_version = "picron"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        self.timeout = self.server.request_timeout
        super().setup()
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + self.timeout
        self._started = time.monotonic()
        super().handle_one_request()

    def dispatch(self) -> None:
        self.server.request_started()
        try:
            self._reader.deadline = time.monotonic() + self.timeout  # a fresh one for the body
            try:
                path, query = parse_target(self.path)
                if len(self.headers.get_all("Host") or ()) > 1:
                    raise ValidationError("more than one Host header")
                body = self._read_body()
            except PicronError as error:
                self._refuse(error)
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            self._write(self.server.site.handle(Request(
                method=self.command, path=path, query=query, headers=headers, body=body,
                client=self.client_address[0])))
        finally:
            self.server.request_finished()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = dispatch

    def _read_body(self) -> bytes:
        """Exactly ``Content-Length`` bytes, after checking it; never more than 1 MiB."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise LengthRequired("chunked request bodies are not supported: send Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            if self.command in ("POST", "PUT", "PATCH"):
                raise LengthRequired("Content-Length required (send a body, even an empty one)")
            return b""
        text = lengths[0].strip()
        if len(set(lengths)) > 1 or not text.isascii() or not text.isdigit():
            raise ValidationError("invalid Content-Length")
        if len(text) > 9 or int(text) > MAX_BODY:
            raise PayloadTooLarge("request body over 1 MiB")
        body = self.rfile.read(int(text))
        if len(body) < int(text):
            raise ValidationError("the request body is shorter than its Content-Length")
        return body

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        """http.server's own refusals (400, 414, 431, 501) in picron's format and headers."""
        status = HTTPStatus(code)
        error = PicronError(message or status.phrase)
        error.http_status, error.code = code, status.phrase.lower().replace(" ", "_")
        self._refuse(error)

    def _refuse(self, error: PicronError) -> None:
        """Answer a request whose body was not read, then close the connection."""
        site = self.server.site
        path = getattr(self, "path", "") or "/"
        req = Request(method=self.command or "GET", path=path if is_api(path) else "/")
        self.close_connection = self._linger = True
        self._write(site.secure(site.error_response(req, error)))

    def finish(self) -> None:
        super().finish()
        if getattr(self, "_linger", False):
            self._drain()

    def _drain(self) -> None:
        # Closing a socket with unread data sends a reset, which can destroy our answer
        # before the client reads it: read (and drop) what it still sends, briefly.
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_SECONDS)
            deadline, left = time.monotonic() + LINGER_SECONDS, 4 * MAX_BODY
            while left > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _write(self, response: Response) -> None:
        self.connection.settimeout(self.timeout)
        if self.server.stopping:
            self.close_connection = True
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        for value in response.cookies:
            self.send_header("Set-Cookie", value)
        if response.status != 204:
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and response.status != 204:
            self.wfile.write(response.body)

    def log_request(self, code="-", size="-") -> None:
        elapsed = (time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000
        logger.info('%s "%s %s" %s %.0f ms', self.client_address[0], printable(self.command or ""),
                    printable(getattr(self, "path", "")), code, elapsed)

    def log_message(self, format: str, *args) -> None:
        logger.info("%s %s", self.client_address[0], printable(format % args))


class Server(ThreadingHTTPServer):
    """A threading HTTP server with a real backlog, a thread cap and in-flight tracking."""

    request_queue_size = 128
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], site: Site, *,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.site = site
        self.request_timeout = request_timeout
        self.stopping = False
        self._slots = threading.BoundedSemaphore(max_connections)
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which may wait for DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        body = b"the server is busy; try again\n"
        head = "".join(f"{name}: {value}\r\n" for name, value in SECURITY_HEADERS.items())
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                            b"Retry-After: 1\r\nContent-Type: text/plain\r\n"
                            + head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode()
                            + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        logger.debug("connection from %s ended with an error", client_address[0],
                     exc_info=True)

    def request_started(self) -> None:
        with self._idle:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; returns whether that happened in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


class Scheduler(threading.Thread):
    """``run_scheduled`` once a minute inside the server, as the cron entry would call it.

    Same code path as the cron command (claims included), on its own connection;
    stops when ``stop`` is set.
    """

    def __init__(self, app, stop: threading.Event, period: float = SCHEDULER_PERIOD) -> None:
        super().__init__(name="picron-scheduler", daemon=True)
        self.app = app
        self.stop = stop
        self.period = period

    def run(self) -> None:
        while not self.stop.wait(self.period - time.time() % self.period):
            self.tick()

    def tick(self) -> None:
        """One ``run_scheduled``; any error is logged, never raised."""
        try:
            store = self.app.open_store()
            try:
                report = self.app.runner(store=store).run_scheduled()
            finally:
                store.close()
        except PicronError as error:
            logger.error("scheduler: %s", error.message)
            return
        except Exception:
            logger.exception("scheduler: run_scheduled failed")
            return
        for warning in report.warnings:
            logger.warning("scheduler: %s", warning)
        for result in report.results:
            logger.info("scheduler: task %r on %s: %s", result.task, result.node, result.status)


def serve(app, listen: str | None = None, scheduler: bool = False) -> int:
    """Serve the page and API until SIGTERM or SIGINT; returns the exit code (0).

    Refuses (``ValidationError``) a non-loopback address while no admin password is
    set; raises ``ConfigError`` if the address cannot be bound, ``StorageError`` if the
    database is unusable.
    """
    text = listen or app.config.listen
    host, port = parse_listen(text)
    if password_hash(app.store) is None and not is_loopback(host):
        raise ValidationError(f"refusing to listen on {text}: without an admin password picron "
                              "serves loopback addresses only; run 'picron passwd' first",
                              field="listen")
    _configure_logging()
    site = Site(app, listen_host=host)
    try:
        server = Server((host, port), site)
    except OSError as error:
        raise ConfigError(f"cannot listen on {text}: {error.strerror or error}") from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    threads = [threading.Thread(target=server.serve_forever, name="picron-http", daemon=True)]
    if scheduler:
        threads.append(Scheduler(app, stop))
    for thread in threads:
        thread.start()
    shown = f"[{server.server_name}]" if server.address_family == socket.AF_INET6 \
        else server.server_name
    logger.info("serving on http://%s:%d/%s", shown, server.server_port,
                " with the scheduler" if scheduler else "")
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _shut_down(server, site, stop, threads[1:])
    return 0


def _shut_down(server: Server, site: Site, stop: threading.Event, others) -> None:
    logger.info("stopping: finishing requests in flight")
    stop.set()
    server.stopping = True
    server.shutdown()
    deadline = time.monotonic() + SHUTDOWN_GRACE
    if not server.wait_idle(SHUTDOWN_GRACE):
        logger.warning("stopping: requests still running after %g s", SHUTDOWN_GRACE)
    site.background.join(max(0.0, deadline - time.monotonic()))
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    server.server_close()
    logger.info("stopped")


def _configure_logging() -> None:
    # The server's log is its stderr, one line per request (as http.server's); the
    # CLI configures logging only for --debug, so set it up here when nobody did.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s picron: %(message)s")
