import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests import dockercli
from tests.envsetup import ROOT, VAR_DIR
from tests.s3server import s3, s3_server  # noqa: F401  (fixtures: a real SeaweedFS S3 server)
from tests.engines import _extra_engines_cleanup, e1_over_ssh, extra_engine_e1, extra_engine_e2  # noqa: F401  (extra engines)

pytest.register_assert_rewrite("tests.helpers")


def wait_for(predicate, *, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


# --- selection ---------------------------------------------------------------------

_PROCESS_FIXTURES = {"celery_worker", "worker_factory", "engine_watcher"}
_PROCESS_HELPERS = ("worker_process", "beat_process", "watcher_process")
_BROWSER_FIXTURES = {"browser", "page", "login", "live_server"}


def pytest_collection_modifyitems(items):
    """Add the engine/worker/browser marks that the fixtures and imports imply, so that
    `-m "not engine and not worker and not browser"` leaves the quick, database-only part
    (the SQLite pass of make test; the PostgreSQL pass runs everything)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        module = vars(getattr(item, "module", None) or object)
        if names & _PROCESS_FIXTURES or any(h in module for h in _PROCESS_HELPERS):
            item.add_marker(pytest.mark.worker)
        if names & _BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        if "dockercli" in module or "engine" in module:
            item.add_marker(pytest.mark.engine)


# --- database ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """No xdist suffix: each pytest process already has its own test database (a SQLite
    file or a PostgreSQL database, envsetup), and the worker processes we start must find
    it under the same name."""


@pytest.fixture(scope="session", autouse=True)
def _flush_retries_a_deadlock():
    """A transactional test ends with a flush: on PostgreSQL one TRUNCATE of every table,
    which takes each table's exclusive lock in turn while the real worker and watcher
    processes may still read and write (a job's last sync): the server breaks that
    deadlock by failing the flush, which would leave rows for the next test. Retry it:
    the other side has finished by then. (SQLite's flush waits for the file's one lock.)"""
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def is_deadlock(exc: BaseException | None) -> bool:
        while exc is not None:
            if "deadlock detected" in str(exc):
                return True
            exc = exc.__cause__ or exc.__context__
        return False

    def fixture_teardown(self):
        for attempt in range(5):
            try:
                return original(self)
            except Exception as exc:
                if attempt == 4 or not is_deadlock(exc):
                    raise
                time.sleep(0.2 * (attempt + 1))

    TransactionTestCase._fixture_teardown = fixture_teardown
    yield
    TransactionTestCase._fixture_teardown = original


@pytest.fixture(scope="session", autouse=True)
def _clean_var_dir():
    yield
    dockercli.cleanup()
    shutil.rmtree(VAR_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _engine_cleanup():
    """Remove this run's engine objects after every test that made some, pass or fail."""
    yield
    if dockercli.touched():
        dockercli.cleanup()


# --- users and roles ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """PBKDF2's 1,000,000 rounds cost about half a second per user made or logged in; the
    tests make hundreds. Production keeps Django's default hashers (project/settings.py)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]



@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from accounts.roles import ensure_roles

    def make(role: str | None, username: str | None = None, password: str = "pw-for-tests-1"):
        ensure_roles()
        username = username or f"{(role or 'norole').lower()}-{uuid.uuid4().hex[:6]}"
        user = get_user_model().objects.create_user(username=username, password=password)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def client_for(make_user, client):
    """client_for("Admin") -> a Django test client logged in with that role."""
    from django.test import Client

    def make(role: str | None):
        c = Client()
        c.force_login(make_user(role))
        return c

    return make


# --- real processes -----------------------------------------------------------------


def _test_env() -> dict:
    env = dict(os.environ)
    env["DATABASE_URL"] = os.environ["CARGOHOLD_TEST_DATABASE_URL"]  # the test database (envsetup)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A real Cargohold process (worker, beat, watcher) on the test database."""

    def __init__(self, name: str, args: list[str], ready_text: str):
        self.name = name
        self.args = args
        self.ready_text = ready_text
        self.log_path = VAR_DIR / f"{name}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Process":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=_test_env(), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=timeout, message=f"{self.name} to start (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        return self.ready_text in self.log()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole process group: as abrupt as a crash or the OOM killer."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "_log", None):
            self._log.close()


def worker_process(concurrency: int = 2, name: str = "worker", queue: str | None = None) -> Process:
    """A worker on this run's queue, or on `queue` alone (so a test can kill the worker that
    runs its job without the shared worker taking the job first)."""
    return Process(
        name,
        [sys.executable, "-m", "celery", "-A", "project", "worker", "--loglevel", "INFO",
         "--concurrency", str(concurrency), "-n", f"{name}-{os.getpid()}-{time.monotonic_ns()}@%h",
         "--without-gossip", "--without-mingle", "-Q", queue or os.environ["CELERY_QUEUE"]],
        ready_text="ready.",
    )


def beat_process(scheduler: str | None = None) -> Process:
    """Celery beat on the test database. Settings choose the scheduler (django-celery-beat's
    DatabaseScheduler); `scheduler` names one explicitly."""
    args = [sys.executable, "-m", "celery", "-A", "project", "beat", "--loglevel", "INFO",
            "--schedule", str(VAR_DIR / f"beat-{time.monotonic_ns()}")]
    if scheduler:
        args += ["--scheduler", scheduler]
    return Process("beat", args, ready_text="beat: Starting")


def watcher_process() -> Process:
    return Process("watcher", [sys.executable, "manage.py", "watch_engine"], ready_text="Watching engine events")


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """A real Celery worker process on this run's queue and test database (shared)."""
    proc = worker_process().start()
    yield proc
    proc.stop()


@pytest.fixture
def worker_factory(django_db_setup):
    """Start dedicated worker processes (for tests that kill them)."""
    started: list[Process] = []

    def make(**kwargs) -> Process:
        proc = worker_process(**kwargs).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def engine_watcher(django_db_setup):
    proc = watcher_process().start()
    yield proc
    proc.stop()


# --- browser ------------------------------------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make setup` (installs Debian's chromium).")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def login(page, make_user):
    """login("Admin") -> logs the browser page in as a new user with that role."""

    def do(role: str = "Admin", username: str | None = None):
        user = make_user(role, username=username)
        page.goto("/accounts/login/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", "pw-for-tests-1")
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        return user

    return do
