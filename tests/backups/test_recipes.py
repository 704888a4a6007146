"""Recipes for known images: what they run (pure), and PostgreSQL and SQLite dumps taken
with a backup and loaded back, against real servers in a locally built image."""

import pytest

from backups import recipes
from backups.models import Backup
from backups.storage import get_storage
from jobs.models import Job
from tests import dbimages, dockercli
from tests.backups.conftest import run_backup

SECRET = dbimages.SECRET


# --- pure: detection and commands ---------------------------------------------------------------


@pytest.mark.parametrize("image, name", [
    ("postgres:16", "postgres"), ("docker.io/library/postgres:16-alpine@sha256:abc", "postgres"),
    ("bitnami/postgresql:15", "postgres"), ("mariadb:11", "mysql"), ("mysql", "mysql"), ("redis:7", "redis"),
    ("valkey/valkey:8", "redis"), ("mongo:7", "mongo"), ("nginx:latest", None), ("", None),
])
def test_recipes_know_images_by_name(image, name):
    found = recipes.recipes_for(image, {})
    assert [r.name for r in found] == ([name] if name else [])


def test_sqlite_files_are_named_by_a_label_and_must_be_absolute():
    found = recipes.recipes_for("myapp:1", {recipes.SQLITE_LABEL: "/data/app.db, /data/other.db"})
    assert [recipes.recipe_id(r) for r in found] == ["sqlite:/data/app.db", "sqlite:/data/other.db"]
    assert [r.name for r in recipes.recipes_for("registry.local/ourdb:2", {recipes.RECIPE_LABEL: "Postgres"})] == [
        "postgres"]
    with pytest.raises(recipes.RecipeError, match="absolute path"):
        recipes.recipes_for("myapp:1", {recipes.SQLITE_LABEL: "app.db"})
    with pytest.raises(recipes.RecipeError, match="No recipe"):
        recipes.recipe_named("postgres", image="nginx", labels={})


def test_the_commands_are_the_consistent_ones_and_carry_no_secret():
    assert "pg_dumpall" in recipes.POSTGRES.dump[2]
    assert "--single-transaction" in recipes.MYSQL.dump[2] and "MYSQL_PWD=" in recipes.MYSQL.dump[2]
    assert " -p" not in recipes.MYSQL.dump[2]  # the password is an environment variable, not an argument
    assert "BGSAVE" in recipes.REDIS.dump[2] and "LASTSAVE" in recipes.REDIS.dump[2]
    assert "mongodump --archive" in recipes.MONGO.dump[2] and "--password" not in recipes.MONGO.dump[2]
    assert recipes.REDIS.load is None and "RDB" in recipes.REDIS.why_not_load
    sqlite = recipes.sqlite_recipe("/data/app.db")
    assert ".backup" in sqlite.dump[2] and sqlite.dump[-1] == "/data/app.db" and ".restore" in sqlite.load[2]


def test_failures_are_explained():
    assert "not in the container's image" in recipes.explain_failure(recipes.MYSQL, 127, "sh: mysqldump: not found")
    assert "credentials" in recipes.explain_failure(recipes.POSTGRES, 2, "FATAL: password authentication failed")
    assert recipes.explain_failure(recipes.POSTGRES, 1, "oops\nERROR: disk full") == \
        "PostgreSQL (pg_dumpall) failed (exit 1): ERROR: disk full."
    assert recipes.dump_key("v/v-1.tar.zst", recipes.POSTGRES, "my db") == "v/v-1.tar.zst.my_db.postgres.sql"


# --- against real servers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def db_image():
    return dbimages.ensure_image()


_psql = dbimages.psql


def _choose(volume: str, ctr: str, recipe: str):
    from drills.models import DumpChoice

    return DumpChoice.objects.create(volume_name=volume, container_name=ctr, recipe=recipe)


def _load(backup: Backup) -> Job:
    from jobs.runner import job_perform
    from jobs.services import job_create

    entry = backup.manifest["dumps"][0]
    job = job_create(kind="dump_load", target=backup.volume_name, params={"backup": backup.pk, "key": entry["key"]})
    job_perform(job.pk)
    return Job.objects.get(pk=job.pk)


_postgres = dbimages.postgres_container


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_a_postgres_dump_is_stored_with_the_backup_and_loads_back(db_image, no_enqueue, backup_root):
    from backups import services

    volume, ctr = _postgres(db_image)
    _psql(ctr, "create table orders (id int primary key, item text); "
               "insert into orders select g, 'item ' || g from generate_series(1, 500) g")
    _choose(volume, ctr, "postgres")

    backup = run_backup(services.backup_start(volume_name=volume))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    [entry] = backup.manifest["dumps"]
    dump = open(get_storage().location(entry["key"]), "rb").read()
    assert b"CREATE TABLE public.orders" in dump and entry["bytes"] == len(dump) and entry["loadable"]
    assert SECRET not in Job.objects.get(pk=backup.job_id).log

    _psql(ctr, "drop table orders")
    loaded = _load(backup)

    assert loaded.status == Job.Status.SUCCEEDED, loaded.error
    assert _psql(ctr, "select count(*), max(item) from orders") == "500|item 99"


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_a_sqlite_dump_is_a_consistent_copy_and_loads_back(db_image, no_enqueue, backup_root):
    from backups import services
    from volumes.services import mirror_sync

    volume = dockercli.create_volume()
    ctr = dockercli.unique_name("app")
    dockercli.docker("run", "-d", "--name", ctr, "--label", dockercli.TEST_LABEL, "--network", "none", "--user", "0",
                     "--label", f"{recipes.SQLITE_LABEL}=/data/app.db", "-v", f"{volume}:/data", db_image,
                     "sleep", "3600")
    dockercli.docker("exec", ctr, "sqlite3", "/data/app.db", "create table t(x); insert into t values (1),(2),(3);")
    mirror_sync()
    _choose(volume, ctr, "sqlite:/data/app.db")

    backup = run_backup(services.backup_start(volume_name=volume))

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    [entry] = backup.manifest["dumps"]
    assert open(get_storage().location(entry["key"]), "rb").read(16) == b"SQLite format 3\x00"
    dockercli.docker("exec", ctr, "sqlite3", "/data/app.db", "delete from t;")
    loaded = _load(backup)

    assert loaded.status == Job.Status.SUCCEEDED, loaded.error
    assert dockercli.docker("exec", ctr, "sqlite3", "/data/app.db", "select sum(x) from t;") == "6"


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_a_dump_that_cannot_be_taken_fails_the_backup_and_leaves_nothing(db_image, no_enqueue, backup_root):
    from backups import services

    volume, ctr = _postgres(db_image)
    _choose(volume, ctr, "postgres")
    dockercli.docker("exec", ctr, "sh", "-c", "rm /usr/lib/postgresql/15/bin/pg_dumpall", check=False)
    dockercli.docker("exec", "--user", "0", ctr, "rm", "-f", "/usr/lib/postgresql/15/bin/pg_dumpall")

    backup = run_backup(services.backup_start(volume_name=volume))

    assert backup.status == Backup.Status.FAILED
    assert "not in the container's image" in backup.error
    assert not [p for p in backup_root.rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_a_recipe_in_an_image_without_its_tools_is_explained():
    from volumes import engine

    volume = dockercli.create_volume()
    ctr = dockercli.run_container(f"{volume}:/data", command="trap 'exit 0' TERM; sleep 3600 & wait")
    cid = dockercli.docker("inspect", "-f", "{{.Id}}", ctr)

    result = engine.exec_run(cid, list(recipes.MYSQL.dump), timeout=20)

    assert result.exit_code == 127
    assert "not in the container's image" in recipes.explain_failure(recipes.MYSQL, result.exit_code, result.output)


# --- the pages ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_the_volume_page_offers_the_recipe_and_an_admin_opts_in(db_image, client_for):
    from drills.models import DumpChoice

    volume, ctr = _postgres(db_image)
    admin, operator = client_for("Admin"), client_for("Operator")

    page = admin.get(f"/volumes/{volume}/").content.decode()
    assert 'data-recipe="postgres"' in page and "Dump with each backup" in page and SECRET not in page
    assert "Dump with each backup" not in operator.get(f"/volumes/{volume}/").content.decode()
    assert operator.post(f"/volumes/{volume}/dumps/", {"container": ctr, "recipe": "postgres",
                                                        "enable": "1"}).status_code == 403
    refused = admin.post(f"/volumes/{volume}/dumps/", {"container": ctr, "recipe": "mongo", "enable": "1"},
                         follow=True)
    assert "No recipe" in refused.content.decode() and not DumpChoice.objects.exists()

    assert admin.post(f"/volumes/{volume}/dumps/", {"container": ctr, "recipe": "postgres",
                                                     "enable": "1"}).status_code == 302
    assert DumpChoice.objects.filter(volume_name=volume, container_name=ctr, recipe="postgres").exists()
    assert 'data-chosen="1"' in admin.get(f"/volumes/{volume}/").content.decode()
    assert admin.get(f"/volumes/{volume}/dumps/").status_code == 405


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_the_backup_page_loads_a_dump_back_through_a_job(db_image, no_enqueue, backup_root, client_for):
    from backups import services

    volume, ctr = _postgres(db_image)
    _psql(ctr, "create table t (x int); insert into t values (42)")
    _choose(volume, ctr, "postgres")
    backup = run_backup(services.backup_start(volume_name=volume))
    key = backup.manifest["dumps"][0]["key"]
    admin, operator = client_for("Admin"), client_for("Operator")

    assert "Load into" in admin.get(f"/backups/{backup.pk}/").content.decode()
    assert "Load into" not in operator.get(f"/backups/{backup.pk}/").content.decode()
    assert operator.post(f"/backups/{backup.pk}/dumps/load/", {"key": key}).status_code == 403
    assert admin.post(f"/backups/{backup.pk}/dumps/load/", {"key": "../etc/passwd"}).status_code == 302
    assert not Job.objects.filter(kind="dump_load").exists()

    _psql(ctr, "drop table t")
    answer = admin.post(f"/backups/{backup.pk}/dumps/load/", {"key": key})
    job = Job.objects.get(kind="dump_load")
    assert answer.status_code == 302 and answer["Location"] == f"/jobs/{job.pk}/"
    from jobs.runner import job_perform

    job_perform(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert _psql(ctr, "select x from t") == "42"


def _fake_tool_container(name: str, script: str, env: dict) -> str:
    """A busybox container whose `name` is a script printing what it was given."""
    ctr = dockercli.unique_name("fake")
    args = ["run", "-d", "--name", ctr, "--label", dockercli.TEST_LABEL, "--network", "none"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    dockercli.docker(*args, dockercli.HELPER_IMAGE, "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")
    dockercli.docker("exec", ctr, "sh", "-c", f"printf '%s\\n' '#!/bin/sh' '{script}' > /bin/{name} && "
                                             f"chmod +x /bin/{name}")
    return dockercli.docker("inspect", "-f", "{{.Id}}", ctr)


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
@pytest.mark.parametrize("recipe, tool, env, script", [
    (recipes.MYSQL, "mysqldump", {"MYSQL_ROOT_PASSWORD": SECRET}, 'echo "args:$*"; echo "pwd:$MYSQL_PWD" >&2'),
    (recipes.MONGO, "mongodump", {"MONGO_INITDB_ROOT_USERNAME": "root", "MONGO_INITDB_ROOT_PASSWORD": SECRET},
     'echo "args:$*"; for a; do case "$a" in /tmp/*) cat "$a" >&2;; esac; done'),
])
def test_recipe_secrets_reach_the_tool_outside_its_arguments(recipe, tool, env, script):
    from volumes import engine

    cid = _fake_tool_container(tool, script, env)
    out = bytearray()

    result = engine.exec_run(cid, list(recipe.dump), timeout=20, stdout_sink=out.extend)

    assert result.ok, result.output
    assert out.startswith(b"args:") and SECRET.encode() not in out  # not among its arguments
    assert SECRET in result.output or "***" in result.output  # it got the secret (stderr is scrubbed)
    if recipe is recipes.MONGO:
        assert dockercli.docker("exec", cid, "sh", "-c", "ls /tmp").strip() == ""  # its config file is gone


@pytest.mark.django_db(transaction=True)
@pytest.mark.engine
def test_a_backup_that_ends_failed_keeps_no_dump_and_a_deleted_one_takes_its_dumps(db_image, no_enqueue,
                                                                                   backup_root):
    from pathlib import Path

    from backups import services
    from backups.worker import backup_delete
    from jobs.services import job_end

    volume, ctr = _postgres(db_image)
    _choose(volume, ctr, "postgres")
    first = run_backup(services.backup_start(volume_name=volume))
    second = run_backup(services.backup_start(volume_name=volume))
    first_dump = Path(get_storage().location(first.manifest["dumps"][0]["key"]))
    second_dump = Path(get_storage().location(second.manifest["dumps"][0]["key"]))
    assert first_dump.is_file() and second_dump.is_file()

    # As the sweep ends the job of a worker killed after the dump: failed, its on_end to run.
    Job.objects.filter(pk=first.job_id).update(status=Job.Status.FAILED, end_handled=False)
    job_end(Job.objects.get(pk=first.job_id))
    backup_delete(backup=Backup.objects.get(pk=second.pk))

    assert not first_dump.exists() and not second_dump.exists()
