"""Security of the web layer (SPEC §6, RELIABILITY S1-S10), in-process through ``Site.handle``."""
from __future__ import annotations

import base64
import re
import sys
import threading

import pytest

from picron import auth
from picron.auth import PasswordChecker, hash_password, set_password
from picron.sessions import safe_next
from picron.site import SECURITY_HEADERS, Site
from tests.webclient import (TASK, body, call, cookie_value, set_cookies, snapshot,
                              text)
from tests.webfixtures import db, site, web_app  # noqa: F401 - fixtures

PASSWORD = "correct horse battery"


def basic(user: str = "admin", password: str = PASSWORD) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


@pytest.fixture
def locked(site, web_app):
    """The site after ``picron passwd``: every page and API call needs a login."""
    store = web_app.open_store()
    set_password(store, PASSWORD)
    store.close()
    return site


def login(site) -> dict:
    """Log in through the form; returns the cookies a browser would then hold."""
    page = call(site, "GET", "/login")
    csrf = cookie_value(page, "picron_csrf")
    response = call(site, "POST", "/login", form={"csrf_token": csrf, "user": "admin",
                                                  "password": PASSWORD, "next": "/"},
                    cookies={"picron_csrf": csrf})
    assert response.status == 303, text(response)
    return {"picron_csrf": csrf, "picron_session": cookie_value(response, "picron_session")}


def session_token(site, cookies: dict) -> str:
    """The CSRF token the pages embed for this session."""
    page = text(call(site, "GET", "/", cookies=cookies))
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


# -- Host header (DNS rebinding) ----------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.nip.io", "evil.example:8080",
                                  "localhost.evil.example", "", None, "local host",
                                  "127.0.0.1:8080\r\nX: y"])
def test_foreign_or_missing_host_is_refused_on_every_route(site, host):
    for path in ("/api/tasks", "/", "/login", "/static/style.css", "/nothing", "/metrics"):
        response = call(site, "GET", path, headers={"host": host})
        assert response.status == 400, path
        assert "host" in text(response).lower()


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:9",
                                  "[::1]", "[::1]:8080", "LOCALHOST"])
def test_loopback_names_are_served(site, host):
    assert call(site, "GET", "/api/tasks", headers={"host": host}).status == 200


def test_allowed_hosts_and_the_listen_host_are_served(web_app):
    web_app.config = web_app.config._replace(allowed_hosts=("cron.example.org",))
    site = Site(web_app, listen_host="192.0.2.7", failed_login_delay=0)
    for host in ("cron.example.org", "cron.example.org:8080", "192.0.2.7:8080"):
        assert call(site, "GET", "/api/tasks", headers={"host": host}).status == 200
    assert call(site, "GET", "/api/tasks", headers={"host": "example.org"}).status == 400


def test_a_refused_host_changes_nothing(site, db):
    before = snapshot(db)
    response = call(site, "POST", "/api/tasks", TASK, headers={"host": "evil.example"})
    assert response.status == 400 and snapshot(db) == before


# -- headers -----------------------------------------------------------------------------


def _boom(app, req):
    raise RuntimeError("secret detail")


@pytest.mark.parametrize("path, status", [("/api/tasks", 200), ("/", 200), ("/login", 303),
                                          ("/api/tasks/9", 404), ("/nothing", 404),
                                          ("/boom", 500), ("/api/boom", 500)])
def test_security_headers_on_every_status(site, path, status):
    site.routes.append(("GET", re.compile(r"(/api)?/boom"), _boom))
    response = call(site, "GET", path)
    assert response.status == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "secret detail" not in text(response)


def test_security_headers_on_errors_of_a_locked_site(locked):
    for response in (call(locked, "GET", "/api/tasks"), call(locked, "GET", "/")):
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"


def test_storage_error_page_has_headers_too(tmp_path, clock, registry):
    from picron.app import App
    from picron.config import Config

    bad = tmp_path / "dir.db"
    bad.mkdir()
    site = Site(App(Config(database=str(bad), node="n", nodes=("n",)), clock=clock,
                    registry=registry))
    response = call(site, "GET", "/")
    assert response.status == 503 and response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_header_with_a_line_break_is_never_sent(site):
    from picron.webcore import Response

    site.routes.append(("GET", re.compile("/split"),
                        lambda app, req: Response(headers={"Location": "/\r\nSet-Cookie: x=1"})))
    response = call(site, "GET", "/split")
    assert response.status == 500 and "Location" not in response.headers


# -- login, sessions, HTTP Basic --------------------------------------------------------------


def test_password_is_stored_as_salted_scrypt_only(web_app, db):
    store = web_app.open_store()
    set_password(store, PASSWORD)
    first = auth.password_hash(store)
    set_password(store, PASSWORD)
    assert first.startswith("scrypt$") and first != auth.password_hash(store)
    with open(db, "rb") as file:
        assert PASSWORD.encode() not in file.read()


def test_locked_api_needs_a_login(locked, db):
    before = snapshot(db)
    for method, path in (("GET", "/api/tasks"), ("POST", "/api/tasks"), ("GET", "/metrics"),
                         ("GET", "/api/health"), ("DELETE", "/api/tasks/1")):
        response = call(locked, method, path, TASK if method == "POST" else None)
        assert response.status == 401
        assert body(response)["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert snapshot(db) == before


def test_locked_pages_redirect_to_the_login(locked):
    response = call(locked, "GET", "/history?task=3")
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=/history%3Ftask%3D3"
    assert call(locked, "POST", "/tasks/1/delete", form={}).status == 303


def test_basic_auth_works_for_scripts_without_csrf_token(locked, web_app):
    response = call(locked, "POST", "/api/tasks", TASK, headers=basic())
    assert response.status == 201
    assert web_app.open_store().list_audit()[0].actor == "web:admin"


def test_every_wrong_login_gets_the_same_answer(locked):
    answers = {call(locked, "GET", "/api/tasks", headers=headers, client=f"10.0.0.{i}").body
               for i, headers in enumerate((basic(password="wrong"), basic(user="root"),
                                            basic(user="", password=""),
                                            basic(user="admin", password=PASSWORD + " ")))}
    assert len(answers) == 1
    forms = set()
    for i, fields in enumerate(({"user": "admin", "password": "nope"},
                                {"user": "root", "password": PASSWORD}, {})):
        page = call(locked, "GET", "/login", client=f"10.1.0.{i}")
        csrf = cookie_value(page, "picron_csrf")
        response = call(locked, "POST", "/login", form={"csrf_token": csrf, **fields},
                        cookies={"picron_csrf": csrf}, client=f"10.1.0.{i}")
        assert response.status == 401 and "picron_session" not in set_cookies(response)
        forms.add(re.sub(r'value="[^"]{43}"', "", text(response)))
    assert len(forms) == 1


def test_repeated_failures_are_limited_per_client(locked, clock):
    for _ in range(5):
        assert call(locked, "GET", "/api/tasks", headers=basic(password="x")).status == 401
    limited = call(locked, "GET", "/api/tasks", headers=basic())  # even the right password
    assert limited.status == 429 and body(limited)["error"]["code"] == "rate_limited"
    assert call(locked, "GET", "/api/tasks", headers=basic(), client="10.9.9.9").status == 200
    clock.advance(minutes=16)
    assert call(locked, "GET", "/api/tasks", headers=basic()).status == 200


def test_failed_logins_are_slowed(web_app, monkeypatch):
    slept = []
    monkeypatch.setattr("picron.sessions.time.sleep", slept.append)
    site = Site(web_app, failed_login_delay=0.5)
    set_password(web_app.open_store(), PASSWORD)
    call(site, "GET", "/api/tasks", headers=basic(password="x"))
    call(site, "GET", "/api/tasks", headers=basic())
    assert slept == [0.5]


def test_password_checks_run_one_at_a_time(monkeypatch):
    running, most, threads_used = [0], [0], set()
    lock = threading.Lock()

    def slow_verify(password, stored):
        threads_used.add(threading.current_thread().name)
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threading.Event().wait(0.02)
        with lock:
            running[0] -= 1
        return False

    monkeypatch.setattr(auth, "verify_password", slow_verify)
    checker = PasswordChecker()
    threads = [threading.Thread(target=checker.check, args=("admin", str(i), "h"))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert len(threads_used) == 1  # one thread: one malloc arena keeps scrypt's memory


def test_login_sets_a_strict_httponly_session_with_a_new_id(locked):
    first, second = login(locked), login(locked)
    assert first["picron_session"] != second["picron_session"]
    assert len(first["picron_session"]) >= 43  # 256 bits in URL-safe base64
    planted = "A" * 43  # a fixed id an attacker planted is never adopted
    page = call(locked, "GET", "/login", cookies={"picron_session": planted})
    csrf = cookie_value(page, "picron_csrf")
    response = call(locked, "POST", "/login",
                    form={"csrf_token": csrf, "user": "admin", "password": PASSWORD},
                    cookies={"picron_csrf": csrf, "picron_session": planted})
    cookie = set_cookies(response)["picron_session"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert cookie_value(response, "picron_session") != planted
    assert call(locked, "GET", "/api/tasks", cookies={"picron_session": planted}).status == 401
    assert call(locked, "GET", "/login", cookies=first).status == 303  # already logged in


def test_session_cookie_opens_pages_and_api(locked):
    cookies = login(locked)
    assert call(locked, "GET", "/", cookies=cookies).status == 200
    assert call(locked, "GET", "/api/tasks", cookies=cookies).status == 200


def test_logout_kills_the_session(locked):
    cookies = login(locked)
    token = session_token(locked, cookies)
    response = call(locked, "POST", "/logout", form={"csrf_token": token}, cookies=cookies)
    assert response.status == 303 and "Max-Age=0" in set_cookies(response)["picron_session"]
    assert call(locked, "GET", "/api/tasks", cookies=cookies).status == 401


def test_a_new_password_ends_every_session(locked, web_app):
    cookies = login(locked)
    set_password(web_app.open_store(), "another password")
    assert call(locked, "GET", "/api/tasks", cookies=cookies).status == 401


def test_idle_sessions_expire(locked, clock):
    cookies = login(locked)
    clock.advance(minutes=29)
    assert call(locked, "GET", "/api/tasks", cookies=cookies).status == 200
    clock.advance(minutes=29)
    assert call(locked, "GET", "/api/tasks", cookies=cookies).status == 200
    clock.advance(minutes=31)
    assert call(locked, "GET", "/api/tasks", cookies=cookies).status == 401


@pytest.mark.parametrize("forged", ["x", "A" * 43, "../../etc", "", "A" * 10_000])
def test_forged_session_cookies_are_refused(locked, forged):
    login(locked)
    assert call(locked, "GET", "/api/tasks", cookies={"picron_session": forged}).status == 401


def test_login_without_csrf_token_is_refused(locked):
    response = call(locked, "POST", "/login", form={"user": "admin", "password": PASSWORD})
    assert response.status == 403 and "picron_session" not in set_cookies(response)


@pytest.mark.parametrize("target, expected", [
    ("/history?task=1", "/history?task=1"), ("//evil.com", "/"), ("https://evil.com/", "/"),
    ("/\\evil.com", "/"), ("javascript:alert(1)", "/"), ("/a\r\nSet-Cookie: x=1", "/"),
    ("", "/"), (None, "/"), ("/täsks", "/t%C3%A4sks"), ("///evil.com", "/"),
])
def test_next_only_leads_to_local_paths(target, expected):
    assert safe_next(target) == expected


def test_login_redirects_to_next(locked):
    page = call(locked, "GET", "/login?next=//evil.com")
    assert 'value="/"' in text(page)
    csrf = cookie_value(page, "picron_csrf")
    for target, location in (("/history", "/history"), ("//evil.com/", "/")):
        response = call(locked, "POST", "/login", cookies={"picron_csrf": csrf},
                        form={"csrf_token": csrf, "user": "admin", "password": PASSWORD,
                              "next": target})
        assert response.headers["Location"] == location


def test_login_page_escapes_next(locked):
    page = text(call(locked, "GET", '/login?next=/"><script>alert(1)</script>'))
    assert "<script>alert" not in page


# -- CSRF -----------------------------------------------------------------------------------


def _state_changing_routes(site) -> list[tuple[str, str]]:
    routes = []
    for method, pattern, _ in site.routes:
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", pattern.pattern)
            routes.append((method, path.replace("\\", "")))
    return routes


def test_every_form_post_without_token_is_403_and_changes_nothing(site, db):
    call(site, "POST", "/api/tasks", TASK)
    before = snapshot(db)
    routes = _state_changing_routes(site)
    assert len(routes) >= 12
    for method, path in routes:
        for content_type in ("application/x-www-form-urlencoded", "text/plain",
                             "multipart/form-data; boundary=x", None):
            response = call(site, "POST", path, b"name=x", headers={"content-type": content_type})
            assert response.status in (403, 405), (path, content_type, response.status)
    assert snapshot(db) == before


def test_every_state_change_of_a_session_without_token_is_403(locked, db):
    call(locked, "POST", "/api/tasks", TASK, headers=basic())
    cookies = login(locked)
    before = snapshot(db)
    for method, path in _state_changing_routes(locked):
        if path == "/login":
            continue
        for data in ({"name": "x"}, None):
            response = call(locked, method, path, data, cookies=cookies)
            assert response.status == 403, (method, path, response.status)
        response = call(locked, method, path, form={"csrf_token": "A" * 43}, cookies=cookies)
        assert response.status == 403, (method, path, response.status)
    assert snapshot(db) == before


def test_every_state_change_with_a_foreign_origin_is_403(site, db):
    call(site, "POST", "/api/tasks", TASK)
    page = call(site, "GET", "/")
    token = cookie_value(page, "picron_csrf")
    before = snapshot(db)
    for method, path in _state_changing_routes(site):
        for origin in ("http://evil.example", "null", "http://127.0.0.1:9999",
                       "http://localhost:8080", "file://"):
            response = call(site, method, path, {"name": "x"}, cookies={"picron_csrf": token},
                            headers={"origin": origin, "x-csrf-token": token})
            assert response.status == 403, (method, path, origin)
        response = call(site, method, path, {}, headers={"sec-fetch-site": "cross-site"})
        assert response.status == 403
    assert snapshot(db) == before


def test_the_page_token_lets_a_form_through(site, db):
    call(site, "POST", "/api/tasks", TASK)
    page = call(site, "GET", "/")
    token = cookie_value(page, "picron_csrf")
    assert f'value="{token}"' in text(page)  # forms embed it
    response = call(site, "POST", "/tasks/1/disable", form={"csrf_token": token},
                    cookies={"picron_csrf": token},
                    headers={"origin": "http://127.0.0.1:8080"})
    assert response.status == 303
    assert body(call(site, "GET", "/api/tasks/1"))["active"] is False


def test_a_token_from_another_browser_is_refused(site):
    call(site, "POST", "/api/tasks", TASK)
    mine = cookie_value(call(site, "GET", "/"), "picron_csrf")
    theirs = cookie_value(call(site, "GET", "/"), "picron_csrf")
    response = call(site, "POST", "/tasks/1/disable", form={"csrf_token": mine},
                    cookies={"picron_csrf": theirs})
    assert response.status == 403


def test_a_session_needs_its_token_even_for_json(locked):
    cookies = login(locked)
    assert call(locked, "POST", "/api/tasks", TASK, cookies=cookies).status == 403
    token = session_token(locked, cookies)
    assert token != cookies["picron_csrf"]
    response = call(locked, "POST", "/api/tasks", TASK, cookies=cookies,
                    headers={"x-csrf-token": token})
    assert response.status == 201


def test_no_get_changes_anything(site, db, web_app, clock):
    web_app.open_store().record_tick("node1", clock())
    call(site, "POST", "/api/tasks", TASK)
    call(site, "POST", "/api/counters/c/increment", {})
    before = snapshot(db)
    for method, pattern, _ in site.routes:
        if method == "GET":
            path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", pattern.pattern).replace("\\", "")
            assert call(site, "GET", path).status < 500, path
    assert snapshot(db) == before


# -- paths, static files, modules --------------------------------------------------------------


@pytest.mark.parametrize("target", ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                                    "//evil.com/", "/static/..%2f..%2fpicron.db",
                                    "/static/../site.py", "/static/.hidden", "/static/",
                                    "/static/%00", "/static/style.css%00.py"])
def test_traversal_finds_nothing(site, target):
    response = call(site, "GET", target)
    assert response.status in (400, 404)
    assert b"sqlite" not in response.body.lower() and b"import" not in response.body


def test_static_files_are_served_by_exact_name(site):
    from picron.site import STATIC_DIR

    names = sorted(path.name for path in STATIC_DIR.iterdir() if path.is_file())
    assert names, "picron/static is empty"
    response = call(site, "GET", f"/static/{names[0]}")
    assert response.status == 200 and response.body == (STATIC_DIR / names[0]).read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_module_names_never_import_anything(site):
    before = set(sys.modules)
    for name in ("os", "../../x", "picron.db", "subprocess", "__import__('os')"):
        response = call(site, "POST", "/api/tasks", {**TASK, "taskmodule": name})
        assert response.status == 400
        assert "unknown task module" in body(response)["error"]["message"]
    assert set(sys.modules) == before


def test_request_ids_and_bodies_never_leak_a_traceback(site):
    for target in ("/api/tasks/%ff", "/api/tasks?%ff=1"):
        from picron.errors import ValidationError
        try:
            response = call(site, "GET", target)
        except ValidationError as error:  # the adapter refuses undecodable URLs
            assert "UTF-8" in error.message
        else:
            assert response.status in (400, 404)


def test_hash_password_is_salted():
    assert hash_password("same password") != hash_password("same password")


def test_failed_login_memory_is_bounded(clock):
    from picron.sessions import LoginLimiter

    limiter = LoginLimiter(clock, max_failures=2, max_clients=3)
    for client in ("a", "b", "c", "d"):
        limiter.failed(client)
        limiter.failed(client)
    assert limiter.retry_after("d") > 0
    assert limiter.retry_after("a") == 0  # the oldest client was forgotten


def test_sessions_are_bounded_and_least_recently_used_go_first(clock):
    from picron.sessions import SessionStore

    sessions = SessionStore(clock, limit=2)
    first, second = sessions.create("admin"), sessions.create("admin")
    assert sessions.get(first.id) is first  # now the most recently used
    sessions.create("admin")
    assert sessions.get(second.id) is None and sessions.get(first.id) is first


def test_login_form_is_rate_limited_too(locked):
    page = call(locked, "GET", "/login")
    csrf = cookie_value(page, "picron_csrf")
    form = {"csrf_token": csrf, "user": "admin", "password": "wrong"}
    statuses = [call(locked, "POST", "/login", form=form, cookies={"picron_csrf": csrf}).status
                for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    right = {**form, "password": PASSWORD}
    response = call(locked, "POST", "/login", form=right, cookies={"picron_csrf": csrf})
    assert response.status == 429 and "picron_session" not in set_cookies(response)
