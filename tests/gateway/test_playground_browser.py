"""The playground in real browsers: Debian's headless Chromium driven by selenium, and Debian's
headless firefox-esr driven over WebDriver BiDi by puppeteer-core (Debian has no geckodriver).

Rules: the page is served by the test gateway on 127.0.0.1 (port 0) in front of a real pistond
with its host runtimes (python, bash, c, c++); the fake daemon pass is skipped. Every test types
and clicks as a person would, waits with a deadline for what it expects to see, saves a
screenshot of that state under ``PISTOND_SCREENSHOT_DIR`` (default ``build/playground-screenshots``,
not committed), and fails on any error the browser logged (JavaScript errors, blocked by the
Content-Security-Policy, failed loads).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .conftest import GatewayStack

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency")
from selenium.common.exceptions import (  # noqa: E402 (after importorskip)
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Flags that work on these hosts: no sandbox as root, and no background network traffic."""
DESKTOP = (1280, 1100)
PHONE = (390, 844)
WAIT = 30.0
"""Seconds to wait for what a test expects to appear (a C compile on a loaded machine)."""
SCREENSHOTS = Path(
    os.environ.get(
        "PISTOND_SCREENSHOT_DIR",
        Path(__file__).resolve().parents[2] / "build" / "playground-screenshots",
    )
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module, with a fresh profile and its console log kept."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are needed (scripts/bootstrap)")
    profile = tempfile.mkdtemp(prefix="pistond-chromium-", dir="/tmp")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(gateway: GatewayStack, driver: Any) -> Iterator[Page]:
    """The playground against real pistond; fails the test on any error the browser logged."""
    if gateway.fake is not None:
        pytest.skip("the browser tests run real programs: they use the real-daemon pass")
    driver.set_window_size(*DESKTOP)
    driver.get("about:blank")
    driver.get_log("browser")
    yield Page(driver, gateway.url)
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors


class Page:
    """The playground page in the browser, with the steps a person takes."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver = driver
        self.url = url

    def open(self, path: str = "/") -> None:
        """Load the page and wait until it has listed the runtimes."""
        self.driver.get(self.url + path)
        self.wait_for(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))

    def wait_for(self, condition: Callable[[Any], Any], timeout: float = WAIT) -> Any:
        """Wait for ``condition(driver)`` to be truthy; fail with a screenshot if it never is."""
        try:
            wait = WebDriverWait(
                self.driver,
                timeout,
                poll_frequency=0.1,
                ignored_exceptions=[StaleElementReferenceException],
            )
            return wait.until(condition)
        except TimeoutException:
            self.screenshot("timeout")
            raise

    def find(self, selector: str) -> Any:
        """The element matching a CSS selector."""
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def pick(self, select_id: str, value: str) -> None:
        """Choose an option of a select element, as a person does."""
        Select(self.find(f"#{select_id}")).select_by_value(value)

    def editor(self) -> Any:
        """CodeMirror's editable element, inside the editor's shadow root."""
        return self.find("#editor").shadow_root.find_element(By.CSS_SELECTOR, ".cm-content")

    def editor_text(self) -> str:
        """The text of the file shown in the editor."""
        return str(
            self.driver.execute_script(
                "const root = document.querySelector('#editor').shadowRoot;"
                "return [...root.querySelectorAll('.cm-line')].map((l) => l.textContent)"
                ".join('\\n');"
            )
        )

    def type_program(self, text: str) -> None:
        """Replace the shown file's text by typing ``text`` (the editor closes brackets)."""
        editor = self.editor()
        editor.click()
        chord = ActionChains(self.driver).key_down(Keys.CONTROL).send_keys("a")
        chord.key_up(Keys.CONTROL).send_keys(Keys.DELETE).perform()
        self.wait_for(lambda _: self.editor_text() == "")
        editor.send_keys(text)

    def type_into(self, selector: str, text: str) -> None:
        """Replace the text of an input or textarea."""
        field = self.find(selector)
        field.clear()
        field.send_keys(text)

    def stage_text(self, stage: str, stream: str) -> str:
        """The shown stdout or stderr of a stage ('' until it is shown)."""
        selector = f"#results [data-stage={stage}] pre[data-stream={stream}]"
        text = self.driver.execute_script(
            "return document.querySelector(arguments[0])?.textContent ?? '';", selector
        )
        return str(text).rstrip("\n")

    def console_text(self, stream: str) -> str:
        """Everything the interactive console shows for one stream."""
        spans = self.driver.find_elements(
            By.CSS_SELECTOR, f"#console-output [data-stream={stream}]"
        )
        return "".join(span.text + "\n" * span.text.endswith("") for span in spans)

    def screenshot(self, name: str) -> Path:
        """Save the browser's viewport as ``<name>.png`` in the screenshot directory."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


PYTHON_STDIN = (
    "import sys\n"
    'name = input()\nprint("hello,", name)\nprint("lines left:", len(sys.stdin.readlines()))'
)
PYTHON_ECHO = (
    'import sys\nwhile line := sys.stdin.readline(): print("echo:", line, end="", flush=True)'
)


def test_python_program_reads_stdin(page: Page) -> None:
    """Pick python, type a program, give it stdin, Run: its output, exit and times are shown."""
    page.open()
    page.pick("language", "python")
    page.type_program(PYTHON_STDIN)
    page.type_into("#stdin", "world\nsecond\nthird")
    page.find("#run").click()
    page.wait_for(lambda _: page.stage_text("run", "stdout"))
    assert page.stage_text("run", "stdout") == "hello, world\nlines left: 2"
    assert page.find("#results [data-stage=run] .badge").text == "OK"
    facts = page.find("#results [data-stage=run] .facts").text
    assert "exit code 0" in facts
    assert "Wall time" in facts
    assert "CPU time" in facts
    assert "Memory" in facts
    assert "MiB" in facts or "KiB" in facts
    assert not page.driver.find_elements(By.CSS_SELECTOR, "#results [data-stage=compile]")
    page.screenshot("01-python-stdin-output")


def test_ctrl_enter_runs_with_args_and_limits(page: Page) -> None:
    """Ctrl+Enter in the editor runs; arguments reach the program; a lowered limit applies."""
    page.open()
    page.pick("language", "python")
    page.type_program(
        "import sys, time\nprint(sys.argv[1:], flush=True)\ntime.sleep(float(sys.argv[1]))"
    )
    page.type_into("#args", "5\nsecond arg")
    page.type_into("#run-timeout", "700")
    page.editor().send_keys(Keys.CONTROL, Keys.ENTER)
    page.wait_for(lambda _: page.driver.find_elements(By.CSS_SELECTOR, "#results .badge"))
    assert page.find("#results [data-stage=run] .badge").text == "TO"
    assert page.find("#results [data-stage=run] .message").text.startswith("Time limit exceeded")
    assert page.stage_text("run", "stdout") == "['5', 'second arg']"
    assert "signal SIGKILL" in page.find("#results [data-stage=run] .facts").text
    page.screenshot("02-python-args-timeout")


def test_c_shows_compile_and_run_stages(page: Page) -> None:
    """Pick C: its recipe's example loads; Run shows a compile stage and a run stage."""
    page.open()
    page.pick("language", "c")
    page.wait_for(lambda _: "#include" in page.editor_text())
    assert page.find("#file-tabs [aria-selected=true]").text.startswith("test.c")
    page.find("#run").click()
    page.wait_for(lambda _: page.stage_text("run", "stdout"))
    assert page.stage_text("run", "stdout") == "OK"
    compile_card = page.find("#results [data-stage=compile]")
    assert compile_card.find_element(By.CSS_SELECTOR, ".badge").text == "OK"
    assert page.find("#results [data-stage=run] .badge").text == "OK"
    page.screenshot("03-c-compile-and-run")


def test_c_compile_error_skips_run(page: Page) -> None:
    """A C program that does not compile shows the compiler's errors and no run stage."""
    page.open()
    page.pick("language", "c")
    page.type_program("int main(void) { return undefined_name; }")
    page.find("#run").click()
    page.wait_for(lambda _: page.stage_text("compile", "stderr"))
    assert "undefined_name" in page.stage_text("compile", "stderr")
    assert page.find("#results [data-stage=compile] .badge").text == "RE"
    assert "Run skipped" in page.find("#results").text
    assert not page.driver.find_elements(By.CSS_SELECTOR, "#results [data-stage=run]")
    page.screenshot("04-c-compile-error")


def test_interactive_echo_and_eof(page: Page) -> None:
    """Interactive: a typed line is echoed live; EOF ends the program; 4999 is shown as text."""
    page.open()
    page.pick("language", "python")
    page.type_program(PYTHON_ECHO)
    page.pick("mode", "interactive")
    assert page.find("#run").text == "Start"
    page.find("#run").click()
    page.wait_for(lambda _: "Running python" in page.find("#console-state").text)
    line = page.find("#console-line")
    page.wait_for(lambda _: line.is_enabled())
    line.send_keys("hello there", Keys.ENTER)
    page.wait_for(lambda _: "echo: hello there" in page.console_text("stdout"))
    line.send_keys("second line", Keys.ENTER)
    page.wait_for(lambda _: "echo: second line" in page.console_text("stdout"))
    assert "hello there" in page.console_text("stdin")
    page.screenshot("05-interactive-echo")
    page.find("#console-eof").click()
    page.wait_for(lambda _: "job completed" in page.find("#console-state").text.lower())
    events = page.console_text("event")
    assert "run stage ended: exit code 0" in events
    assert "4999 Job Completed" in page.find("#console-state").text
    assert not page.find("#console-line").is_enabled()
    page.screenshot("06-interactive-eof")


def test_interactive_kill_and_signal(page: Page) -> None:
    """Interactive: a signal reaches the program; Kill ends it with SIGKILL."""
    page.open()
    page.pick("language", "python")
    page.type_program(
        "import signal, time\n"
        'signal.signal(signal.SIGUSR1, lambda *a: print("got usr1", flush=True))\n'
        "print('ready', flush=True)\ntime.sleep(30)\ntime.sleep(30)"
    )
    page.pick("mode", "interactive")
    page.find("#run").click()
    page.wait_for(lambda _: "ready" in page.console_text("stdout"))
    page.pick("console-signal", "SIGUSR1")
    page.find("#console-signal-send").click()
    page.wait_for(lambda _: "got usr1" in page.console_text("stdout"))
    page.find("#console-kill").click()
    page.wait_for(lambda _: "job completed" in page.find("#console-state").text.lower())
    assert "signal SIGKILL" in page.console_text("event")
    page.screenshot("07-interactive-kill")


def test_share_link_reproduces_the_program(page: Page) -> None:
    """Share: the link opens the same language, version, files, stdin and args, and runs."""
    page.open()
    page.pick("language", "python")
    page.type_program('import sys\nprint("shared:", input(), sys.argv[1:])')
    page.type_into("#stdin", "from the link")
    page.type_into("#args", "one")
    page.find("#file-add").click()
    page.type_into("#file-name", "helper.txt")
    page.find("#file-name").send_keys(Keys.TAB)
    page.type_program("data file")
    page.find("#share").click()
    link = page.find("#share-url").get_attribute("value")
    assert link.startswith(page.url + "/#run=")
    version = page.find("#version").get_attribute("value")
    page.find("#file-tabs [data-name='test.py']").click()
    program = page.editor_text()
    page.driver.get("about:blank")
    page.driver.get(link)
    page.wait_for(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert page.find("#language").get_attribute("value") == "python"
    assert page.find("#version").get_attribute("value") == version
    assert page.find("#stdin").get_attribute("value") == "from the link"
    assert page.find("#args").get_attribute("value") == "one"
    tabs = page.driver.find_elements(By.CSS_SELECTOR, "#file-tabs [role=tab]")
    assert [tab.get_attribute("data-name") for tab in tabs] == ["test.py", "helper.txt"]
    assert "main" in tabs[0].text
    assert 'print("shared:", input(), sys.argv[1:])' in page.editor_text()
    assert page.editor_text() == program
    page.screenshot("08-share-link-opened")
    tabs[1].click()
    page.wait_for(lambda _: page.editor_text() == "data file")
    page.find("#file-tabs [data-name='test.py']").click()
    page.find("#run").click()
    page.wait_for(lambda _: page.stage_text("run", "stdout"))
    assert page.stage_text("run", "stdout") == "shared: from the link ['one']"


def test_damaged_share_link_is_reported(page: Page) -> None:
    """A share link that does not decode says so on the page (no script error)."""
    page.open("/#run=not-base64-json!")
    error = page.find("#page-error")
    assert error.is_displayed()
    assert "damaged" in error.text


def test_status_view_shows_daemon_and_metrics(page: Page) -> None:
    """The status view shows the daemon's jobs, sandbox and limits, and gateway figures."""
    page.open()
    page.find("#view-tab-status").click()
    page.wait_for(lambda _: page.driver.find_elements(By.CSS_SELECTOR, "#status-body table"))
    page.wait_for(lambda _: page.driver.find_elements(By.CSS_SELECTOR, "#metrics-body table"))
    status = page.find("#status-body").text
    for label in ("Running", "Queued", "Completed", "Cgroups", "Seccomp filter", "run_timeout"):
        assert label in status
    metrics = page.find("#metrics-body").text
    assert "All requests" in metrics
    assert "Jobs by outcome" in metrics
    assert page.find("#view-playground").get_attribute("hidden") is not None
    page.screenshot("09-status-view")


def test_phone_width_has_no_horizontal_scroll_and_runs(page: Page) -> None:
    """At a phone's width the page fits without sideways scrolling and a run works."""
    page.driver.set_window_size(*PHONE)
    page.open()
    page.pick("language", "python")
    page.type_program('print("small screen")')
    page.find("#run").click()
    page.wait_for(lambda _: page.stage_text("run", "stdout"))
    assert page.stage_text("run", "stdout") == "small screen"
    overflow = page.driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    page.screenshot("10-phone-width")


def test_every_control_has_an_accessible_name(page: Page) -> None:
    """Every form control is labelled and every button has a name."""
    page.open()
    unnamed = page.driver.execute_script(
        """
        const controls = [...document.querySelectorAll("input, select, textarea")];
        const bad = controls.filter((c) => !c.labels?.length && !c.getAttribute("aria-label"));
        const buttons = [...document.querySelectorAll("button, [role=tab]")];
        bad.push(...buttons.filter((b) => !b.textContent.trim() && !b.getAttribute("aria-label")));
        const editor = document.querySelector("#editor").shadowRoot.querySelector(".cm-content");
        if (!editor.getAttribute("aria-label")) bad.push(editor);
        return bad.map((node) => node.outerHTML.slice(0, 120));
        """
    )
    assert unnamed == []


FIREFOX = Path("/usr/bin/firefox-esr")
FIREFOX_DRIVER_DIR = Path(__file__).parent / "firefox"


@pytest.fixture(scope="module")
def firefox_driver() -> Path:
    """node with puppeteer-core (``npm ci`` from the committed lock file, no install scripts).

    Debian ships no geckodriver, so Firefox is driven over its built-in WebDriver BiDi.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if not FIREFOX.exists() or node is None or npm is None:
        pytest.skip("Debian's firefox-esr, node and npm are needed (scripts/bootstrap)")
    if not (FIREFOX_DRIVER_DIR / "node_modules" / "puppeteer-core").is_dir():
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=FIREFOX_DRIVER_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return Path(node)


def test_firefox_runs_python_c_interactive_and_share(
    gateway: GatewayStack, firefox_driver: Path
) -> None:
    """In headless Firefox: python with stdin, C, interactive echo and EOF, a share link; no
    script error and no Content-Security-Policy violation."""
    if gateway.fake is not None:
        pytest.skip("the browser tests run real programs: they use the real-daemon pass")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="pistond-firefox-", dir="/tmp")
    try:
        completed = subprocess.run(
            [str(firefox_driver), "playground_firefox.mjs", gateway.url, profile, str(SCREENSHOTS)],
            cwd=FIREFOX_DRIVER_DIR,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["errors"] == []
    seen = report["seen"]
    assert seen["user_agent"].startswith("firefox/")
    assert seen["python"] == "hello, firefox\n"
    assert seen["c_compile"] == "OK"
    assert seen["c_run"] == "OK\n"
    assert "from firefox\necho: from firefox\n" in seen["console"]
    assert "run stage ended: exit code 0" in seen["console"]
    assert "4999 Job Completed" in seen["console_state"]
    assert seen["shared"] == "shared in firefox\n"
    assert seen["shared_stdin"] == "in firefox"
    assert seen["violations"] == []
