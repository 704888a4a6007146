"""Recipes for known images: a consistent dump of a database, taken through exec beside the
file-level archive, and loaded back through exec.

A recipe knows an image (PostgreSQL, MySQL/MariaDB, Redis, MongoDB) by its name (or the
container's `cargohold.recipe` label, for images named otherwise), or a SQLite file by the container's `cargohold.sqlite` label (its paths in the container,
comma-separated). Dumps are opt-in per volume (drills.models.DumpChoice, set on the
volume's page). The commands run in the database's own container, through its own shell:
credentials stay in the container's environment (expanded there, passed as environment
variables such as MYSQL_PWD or a temporary config file), never on a command line or in
our logs. The dump is stored next to the archive as its own object (`<archive>.<recipe>.
<suffix>`) and named in the manifest's `dumps`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from project.errors import CargoholdError

SQLITE_LABEL = "cargohold.sqlite"
RECIPE_LABEL = "cargohold.recipe"  # for an image whose name does not say it: postgres / mysql / redis / mongo


class RecipeError(CargoholdError):
    pass


@dataclass(frozen=True)
class Recipe:
    name: str  # postgres / mysql / redis / mongo / sqlite
    label: str
    suffix: str  # of the stored dump
    dump: tuple[str, ...]  # argv exec'd in the container; the dump on stdout
    load: tuple[str, ...] | None  # argv exec'd in the container; the dump on stdin (None: not from the UI)
    why_not_load: str = ""
    user: str = ""  # "" : the container's own


def image_name(image: str) -> str:
    """`docker.io/library/postgres:16-alpine@sha256:...` -> `postgres`; `bitnami/postgresql` -> `postgresql`."""
    name = (image or "").split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def _sh(script: str, *args: str) -> tuple[str, ...]:
    return ("sh", "-c", script, "cargohold", *args)


POSTGRES = Recipe(
    name="postgres", label="PostgreSQL (pg_dumpall)", suffix="sql",
    dump=_sh('exec pg_dumpall --clean --if-exists -U "${POSTGRES_USER:-postgres}"'),
    load=_sh('exec psql -X -q -v ON_ERROR_STOP=0 -U "${POSTGRES_USER:-postgres}" -d postgres'),
)
# The root password from the container's own environment into MYSQL_PWD (never an argument).
_MYSQL_AUTH = 'MYSQL_PWD="${MYSQL_ROOT_PASSWORD:-$MARIADB_ROOT_PASSWORD}"; export MYSQL_PWD; '
MYSQL = Recipe(
    name="mysql", label="MySQL / MariaDB (mysqldump --single-transaction)", suffix="sql",
    dump=_sh(_MYSQL_AUTH + 'dump=$(command -v mariadb-dump || command -v mysqldump) || { echo "no mysqldump in '
             'the image" >&2; exit 127; }; exec "$dump" -uroot --all-databases --single-transaction --routines '
             '--events --triggers --quick'),
    load=_sh(_MYSQL_AUTH + 'client=$(command -v mariadb || command -v mysql) || exit 127; exec "$client" -uroot'),
)
REDIS = Recipe(
    name="redis", label="Redis (BGSAVE, then the RDB file)", suffix="rdb",
    dump=_sh('[ -n "$REDIS_PASSWORD" ] && export REDISCLI_AUTH="$REDIS_PASSWORD"; '
             'before=$(redis-cli LASTSAVE) || exit 1; redis-cli BGSAVE >&2 || exit 1; n=0; '
             'while [ "$(redis-cli LASTSAVE)" = "$before" ]; do n=$((n+1)); '
             '[ $n -gt 3600 ] && { echo "BGSAVE did not finish" >&2; exit 1; }; sleep 1; done; '
             'dir=$(redis-cli --raw CONFIG GET dir | tail -n 1); file=$(redis-cli --raw CONFIG GET dbfilename | '
             'tail -n 1); exec cat "$dir/$file"'),
    load=None,
    why_not_load="Redis loads an RDB file only when it starts: stop the container, put the file in its data "
                 "folder (restore the archive) and start it again.",
)
# The password goes through a config file only the container's user can read, then is removed.
_MONGO_AUTH = ('umask 077; auth=""; c=""; if [ -n "$MONGO_INITDB_ROOT_USERNAME" ]; then c=$(mktemp); '
               'printf "password: %s\\n" "$MONGO_INITDB_ROOT_PASSWORD" > "$c"; '
               'auth="--authenticationDatabase admin --username $MONGO_INITDB_ROOT_USERNAME --config $c"; fi; ')
_MONGO_END = '; s=$?; [ -n "$c" ] && rm -f "$c"; exit $s'
MONGO = Recipe(
    name="mongo", label="MongoDB (mongodump --archive)", suffix="archive",
    dump=_sh(_MONGO_AUTH + "mongodump --archive --quiet $auth" + _MONGO_END),
    load=_sh(_MONGO_AUTH + "mongorestore --archive --drop --quiet $auth" + _MONGO_END),
)

IMAGES = {
    "postgres": POSTGRES, "postgresql": POSTGRES, "postgis": POSTGRES, "timescaledb": POSTGRES,
    "mysql": MYSQL, "mariadb": MYSQL, "percona-server": MYSQL,
    "redis": REDIS, "redis-stack-server": REDIS, "valkey": REDIS,
    "mongo": MONGO, "mongodb": MONGO, "mongodb-community-server": MONGO,
}


def sqlite_recipe(path: str) -> Recipe:
    """`sqlite3 .backup` of one database file (an online, consistent copy), through a
    temporary file in the container."""
    if not path.startswith("/") or any(c in path for c in "\n\r\0") or ".." in path.split("/"):
        raise RecipeError(f"The {SQLITE_LABEL} label names {path[:200]!r}: an absolute path in the container "
                          "is needed.")
    return Recipe(
        name="sqlite", label=f"SQLite (sqlite3 .backup of {path})", suffix="sqlite3",
        dump=_sh('f=$(mktemp) || exit 1; sqlite3 "$1" ".backup \'$f\'" && cat "$f"; s=$?; rm -f "$f"; exit $s',
                 path),
        load=_sh('f=$(mktemp) || exit 1; cat > "$f" && sqlite3 "$1" ".restore \'$f\'"; s=$?; rm -f "$f"; exit $s',
                 path),
    )


def recipes_for(image: str, labels: dict) -> list[Recipe]:
    """The recipes that apply to a container (its image, its SQLite label). Pure."""
    found = []
    named = str(labels.get(RECIPE_LABEL, "")).strip().lower()
    recipe = IMAGES.get(named) or IMAGES.get(image_name(image))
    if recipe is not None:
        found.append(recipe)
    for path in [p.strip() for p in str(labels.get(SQLITE_LABEL, "")).split(",") if p.strip()]:
        found.append(sqlite_recipe(path))
    return found


def recipe_named(name: str, *, image: str, labels: dict) -> Recipe:
    """The recipe `name` ("postgres", "sqlite:/data/app.db") for a container, or RecipeError."""
    for recipe in recipes_for(image, labels):
        if recipe_id(recipe) == name:
            return recipe
    raise RecipeError(f"No recipe {name!r} applies to this container (image {image or '?'}).")


def recipe_id(recipe: Recipe) -> str:
    return f"sqlite:{recipe.dump[-1]}" if recipe.name == "sqlite" else recipe.name


def dump_key(archive_key: str, recipe: Recipe, container_name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in container_name)[:60]
    return f"{archive_key}.{safe}.{recipe.name}.{recipe.suffix}"


def explain_failure(recipe: Recipe, exit_code: int | None, output: str) -> str:
    """A message a person can act on, from what the dump or load printed (already scrubbed)."""
    text = output.strip().splitlines()
    last = text[-1][:300] if text else ""
    if exit_code in (126, 127) or "not found" in last or "executable file not found" in output:
        return (f"The {recipe.label} tools are not in the container's image ({last or 'command not found'}): "
                "this image cannot be dumped by exec; use a hook instead.")
    if any(w in output for w in ("authentication failed", "Access denied", "NOAUTH", "Authentication failed")):
        return (f"The database refused {recipe.label}'s login ({last}): check the container's credentials "
                "environment (POSTGRES_USER, MYSQL_ROOT_PASSWORD, REDIS_PASSWORD, MONGO_INITDB_ROOT_*).")
    return f"{recipe.label} failed (exit {exit_code}){': ' + last if last else ''}."


def describe(recipe: Recipe) -> str:
    """The command line shown on the volume page (what will run, with nothing secret in it)."""
    return shlex.join(recipe.dump)
