"""A real browser against a real ``picron serve``: headless Chromium driven by selenium.

Creates a task through the form (module option fields included, every invalid field marked
at once, the live preview), sees it listed with its next run, disables it, runs it now and
watches the run finish, searches the list, runs a task on another node from its page,
clones, changes tasks in bulk, filters the history; runs axe-core on every page in light
and dark mode (0 violations); saves screenshots, light and dark, desktop and phone: to a
temporary folder, or with ``PICRON_SCREENSHOTS=docs/screenshots`` to the ones README shows
(tests never write into the working tree unless asked to).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("PICRON_SCREENSHOTS")
                   or Path(tempfile.gettempdir()) / "picron-screenshots")
LAPTOP, PHONE = (1280, 800), (390, 844)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
           "chromium-driver; .ci/run installs them)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """``python -m picron serve`` on a free loopback port; yields (base URL, picron argv,
    environment, login link)."""
    port = free_port()
    env = {**os.environ, "PICRON_NODE": "node1", "XDG_DATA_HOME": str(tmp_path)}
    env.pop("PICRON_CONFIG", None)
    picron = [sys.executable, "-m", "picron", "--db", str(tmp_path / "picron.db")]
    process = subprocess.Popen([*picron, "serve", "--listen", f"127.0.0.1:{port}"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(base + "/static/style.css", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("picron serve did not start: "
                                       + process.stderr.read().decode(errors="replace"))
                time.sleep(0.1)
        token = subprocess.run([*picron, "token"], env=env, capture_output=True, text=True,
                               check=True).stdout.strip()
        yield base, picron, env, f"{base}/login?token={token}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(*LAPTOP)
    yield driver
    driver.quit()


AXE_JS = Path(os.environ.get("PICRON_AXE_JS")
              or "/opt/picron-axe/node_modules/axe-core/axe.min.js")


def axe_script() -> str:
    """axe-core's ``axe.min.js`` from the npm registry, installed beforehand (no network at
    test time): ``.ci/run`` installs it where this looks by default."""
    if not AXE_JS.exists():
        pytest.skip(f"needs axe-core at {AXE_JS}: npm install --prefix /opt/picron-axe "
                    "axe-core@4 (as .ci/run does), or set PICRON_AXE_JS to its axe.min.js")
    return AXE_JS.read_text(encoding="utf-8")


AXE = None


def check_axe(browser) -> None:
    """Run axe-core on the page shown: no violation of any rule, in light and dark mode."""
    global AXE
    AXE = AXE or axe_script()
    for scheme in ("light", "dark"):
        set_scheme(browser, scheme)
        browser.execute_script(AXE)
        result = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(r.violations.map(v => [v.id, v.help,"
            " v.nodes.map(n => n.html.slice(0, 160)).slice(0, 3)])))"
            ".catch(e => done([['axe-error', String(e), []]]));")
        assert result == [], (browser.current_url, scheme, result)
    set_scheme(browser, "light")


def set_scheme(browser, scheme: str) -> None:
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": scheme}]})


def visit(browser, url: str) -> None:
    """Open a page and check it with axe-core."""
    browser.get(url)
    check_axe(browser)


def test_create_list_disable_run_and_history(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, picron, env, login_link = server
    wait = WebDriverWait(browser, 15)
    find = browser.find_element

    visit(browser, base + "/")  # every request needs a credential, also on loopback
    assert "API token" in find(By.TAG_NAME, "main").text
    assert not browser.find_elements(By.CSS_SELECTOR, "nav")  # no navigation before login
    browser.get(login_link)  # the link picron serve prints
    assert "No tasks yet" in find(By.TAG_NAME, "main").text
    assert "Tasks are not running" in find(By.CLASS_NAME, "banner").text  # no cron tick yet
    check_axe(browser)
    find(By.LINK_TEXT, "New task").click()
    check_axe(browser)

    # another module first: the form re-renders with that module's fields, keeping the name
    find(By.ID, "f-name").send_keys("Say hello")
    Select(find(By.ID, "f-taskmodule")).select_by_value("simplestats")
    wait.until(EC.presence_of_element_located((By.ID, "f-option-total_tasks")))
    assert find(By.ID, "f-name").get_attribute("value") == "Say hello"
    Select(find(By.ID, "f-taskmodule")).select_by_value("command")
    wait.until(EC.presence_of_element_located((By.ID, "f-option-command")))

    # an invalid submit marks every field at once; the live preview clears the interval's
    find(By.ID, "f-interval").send_keys("61 * * * *")
    find(By.CSS_SELECTOR, "button[name=save]").click()
    wait.until(EC.presence_of_element_located((By.ID, "error-interval")))
    assert browser.find_elements(By.ID, "error-option-command") or \
        browser.find_elements(By.ID, "error-options")
    assert find(By.ID, "f-interval").get_attribute("aria-invalid") == "true"
    check_axe(browser)
    find(By.ID, "f-interval").clear()
    find(By.ID, "f-interval").send_keys("*/5 * * * *")
    wait.until(EC.invisibility_of_element_located((By.ID, "error-interval")))
    assert find(By.ID, "f-interval").get_attribute("aria-invalid") is None

    find(By.ID, "f-option-command").send_keys("echo hello")
    # the live preview shows the times in the task's zone and notes the DST changes
    find(By.ID, "f-interval").clear()
    find(By.ID, "f-interval").send_keys("0 3 1 3,4 *")  # March 1 (CET), April 1 (CEST)
    find(By.ID, "f-timezone").send_keys("America/New_York")
    wait.until(EC.text_to_be_present_in_element((By.ID, "preview-body"),
                                                "clocks change: EST → EDT"))
    assert "-04-01 03:00 EDT" in find(By.ID, "preview-body").text  # as the server names it
    assert "GMT" not in find(By.ID, "preview-body").text
    assert "at 03:00 on day 1 of the month in March and April" in find(
        By.ID, "interval-reading").text
    find(By.ID, "f-timezone").clear()
    find(By.ID, "f-interval").clear()
    find(By.ID, "f-interval").send_keys("*/5 * * * *")
    wait.until(EC.text_to_be_present_in_element((By.ID, "interval-reading"), "every 5 minutes"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#preview-body li")) == 5)
    browser.set_window_size(LAPTOP[0], page_height(browser))
    save(browser, "new.png")
    browser.set_window_size(*LAPTOP)
    find(By.CSS_SELECTOR, "button[name=save]").click()

    # the new task's own page, with a notice
    wait.until(EC.text_to_be_present_in_element((By.CLASS_NAME, "notice"), "Task created."))
    assert "State per node" in find(By.TAG_NAME, "main").text
    check_axe(browser)
    browser.get(base + "/")
    row = wait.until(EC.presence_of_element_located((By.ID, "task-1")))
    assert "Say hello" in row.text and "every 5 minutes" in row.text
    next_run = row.find_element(By.CSS_SELECTOR, ".when time")
    assert next_run.get_attribute("datetime").endswith("+00:00")
    assert next_run.text.startswith("in ")  # relative, the exact time on hover:
    assert next_run.get_attribute("title").split()[-1].isalpha()  # "2026-12-01 22:15 UTC"
    assert "never" in row.text  # no run yet

    row.find_element(By.CSS_SELECTOR, "button.switch").click()
    row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#task-1.inactive")))
    assert row.find_element(By.CSS_SELECTOR, "button.switch").text == "Off"
    assert "Task disabled." in find(By.CLASS_NAME, "notice").text

    row.find_element(By.XPATH, ".//button[text()='Run now']").click()
    wait.until(EC.url_contains("/runs/"))
    WebDriverWait(browser, 30).until(  # the run's facts refresh in place while it runs
        lambda d: "success" in d.find_element(By.CSS_SELECTOR, "dl.facts").text)
    assert "hello" in find(By.CSS_SELECTOR, "pre.output").text
    check_axe(browser)
    visit(browser, base + "/history")
    run = find(By.CSS_SELECTOR, "table.runs tbody tr")
    assert "Say hello" in run.text and "manual" in run.text and "hello" in run.text

    # the list and the form as README shows them: re-enabled, with a cron tick recorded
    browser.get(base + "/")
    find(By.CSS_SELECTOR, "#task-1 button.switch").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#task-1:not(.inactive)")))
    add_neighbours(picron, env)
    subprocess.run([*picron, "run_scheduled", "-c"], env=env, check=False, timeout=60)
    visit(browser, base + "/")
    assert not browser.find_elements(By.CLASS_NAME, "banner")
    assert "success" in find(By.ID, "task-1").text
    assert "2 failures in a row" in find(By.ID, "task-4").text
    assert "failing" in find(By.CLASS_NAME, "dashboard").text
    visit(browser, base + "/events")  # the failing task went down (SPEC §7)
    assert "down" in find(By.CSS_SELECTOR, "table.events").text
    browser.get(base + "/")

    # search, filter, the task page with a node choice, clone, bulk, history filters
    find(By.ID, "q").send_keys("report")
    find(By.CSS_SELECTOR, "form.filter button").click()
    wait.until(EC.url_contains("q=report"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.tasks tbody tr")) == 1
    check_axe(browser)
    find(By.LINK_TEXT, "Office hours report").click()
    assert "The default is node1" in find(By.CLASS_NAME, "run-form").text
    Select(find(By.ID, "run-node")).select_by_value("node2")
    check_axe(browser)
    find(By.CSS_SELECTOR, ".run-form button").click()
    wait.until(EC.url_contains("/runs/"))
    assert "node2" in find(By.CSS_SELECTOR, "dl.facts").text
    visit(browser, base + "/tasks/2/clone")
    assert find(By.ID, "f-name").get_attribute("value").endswith("(copy)")
    browser.get(base + "/")
    for checkbox in browser.find_elements(By.CSS_SELECTOR, "input[name=ids]")[:2]:
        checkbox.click()
    Select(find(By.ID, "bulk-action")).select_by_value("disable")
    find(By.CSS_SELECTOR, "#bulk button").click()
    wait.until(EC.text_to_be_present_in_element((By.CLASS_NAME, "notice"), "Done"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.inactive")) == 2
    browser.get(base + "/")
    for checkbox in browser.find_elements(By.CSS_SELECTOR, "tr.inactive input[name=ids]"):
        checkbox.click()
    Select(find(By.ID, "bulk-action")).select_by_value("enable")
    find(By.CSS_SELECTOR, "#bulk button").click()
    wait.until(EC.text_to_be_present_in_element((By.CLASS_NAME, "notice"), "Done"))
    visit(browser, base + "/history?status=failed")
    assert "Flaky export" in find(By.CSS_SELECTOR, "table.runs").text
    for path in ("/audit", "/stats", "/zone", "/tasks/1/edit", "/tasks/1/delete", "/tasks/1"):
        visit(browser, base + path)

    for scheme, suffix in (("light", ""), ("dark", "-dark")):
        set_scheme(browser, scheme)
        shoot(browser, base + "/", f"list{suffix}.png", LAPTOP)
        shoot(browser, base + "/tasks/1", f"task{suffix}.png", LAPTOP)
        shoot(browser, base + "/tasks/1/edit", f"edit{suffix}.png", LAPTOP)
        shoot(browser, base + "/", f"list-phone{suffix}.png", PHONE)
        shoot(browser, base + "/tasks/1/edit", f"edit-phone{suffix}.png", PHONE)
        shoot(browser, base + "/history", f"history{suffix}.png", LAPTOP)
    set_scheme(browser, "light")


def add_neighbours(picron: list[str], env: dict) -> None:
    """A few more tasks (another zone, two nodes, a failing one) for telling screenshots."""
    def run(*args: str) -> None:
        subprocess.run([*picron, *args], env=env, check=False, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    run("task", "add", "--name", "Nightly cleanup", "--interval", "30 2 * * *", "--module",
        "cleanup", "--option", "runs_older_than_days=30", "--timezone", "Europe/Berlin")
    run("task", "add", "--name", "Office hours report", "--interval", "0 8 * * 1-5",
        "--module", "command", "--option", "command=echo report", "--nodes", "node1,node2",
        "--ordering", "2")
    run("task", "add", "--name", "Flaky export", "--interval", "15 */6 * * *", "--module",
        "command", "--option", "command=false", "--ordering", "1")
    run("run_manually", "-t", "Flaky export")
    run("run_manually", "-t", "Flaky export")


def page_height(browser) -> int:
    return browser.execute_script("return document.documentElement.scrollHeight") + 140


def save(browser, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / name))


def shoot(browser, url: str, name: str, size: tuple[int, int]) -> None:
    """A screenshot of the whole page at the given window width."""
    browser.set_window_size(*size)
    browser.get(url)
    browser.set_window_size(size[0], max(size[1], page_height(browser)))
    save(browser, name)
