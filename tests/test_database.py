"""The pass runs on the database it was asked for (CARGOHOLD_TEST_DATABASE, tests/envsetup.py),
in this process and in the processes the tests start: a PostgreSQL pass cannot silently fall
back to SQLite."""

import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import ROOT, _test_env

VENDORS = {"sqlite": "sqlite", "postgres": "postgresql"}


@pytest.mark.django_db
def test_the_tests_run_on_the_database_the_pass_names():
    assert connection.vendor == VENDORS[os.environ["CARGOHOLD_TEST_DATABASE"]]
    assert connection.settings_dict["NAME"] == os.environ["CARGOHOLD_TEST_DB"]
    with connection.cursor() as cursor:
        cursor.execute("select 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
def test_processes_the_tests_start_use_the_same_test_database():
    from accounts.models import AuditEvent

    AuditEvent.objects.create(action="db_probe", object_type="test", object_name="seen-by-child")
    code = ("from django.db import connection; from accounts.models import AuditEvent; "
            "print(connection.vendor, connection.settings_dict['NAME'], "
            "AuditEvent.objects.filter(action='db_probe', object_name='seen-by-child').count())")
    out = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c", code], cwd=ROOT, env=_test_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [connection.vendor, os.environ["CARGOHOLD_TEST_DB"], "1"]


@pytest.mark.django_db
def test_postgresql_runs_without_jit():
    """JIT compiled the overview's counting queries for longer than they ran (settings)."""
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL setting")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
