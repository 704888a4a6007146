"""A database test image built from the host's Debian packages (no pulls here): PostgreSQL's
server and client binaries, sqlite3 and busybox, with the libraries ldd names, imported
FROM scratch (`docker import` of a tar made here, so owners and modes are ours).

Tagged by the digest of what goes in: built once per machine, rebuilt when a package
changes. The entrypoint mimics the official postgres image: initdb on an empty data
folder (trust for local connections, POSTGRES_USER), then postgres on the socket in
/var/run/postgresql.
"""

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

PG = Path("/usr/lib/postgresql/15")
BINARIES = [PG / "bin" / n for n in ("postgres", "initdb", "pg_ctl", "psql", "pg_dump", "pg_dumpall", "pg_isready")]
BINARIES += [Path("/usr/bin/sqlite3")]
MODULES = [PG / "lib" / n for n in ("plpgsql.so", "dict_snowball.so")]
TREES = [Path("/usr/share/postgresql/15")]
ZONES = [Path("/usr/share/zoneinfo/UTC"), Path("/usr/share/zoneinfo/Etc/UTC")]
BUSYBOX = Path("/bin/busybox")
APPLETS = ["sh", "cat", "mktemp", "rm", "timeout", "sleep", "id", "ps", "kill", "test", "ls", "echo", "mkdir", "chmod"]
POSTGRES_UID = 999
ENTRYPOINT = f"""#!/bin/sh
set -e
export PGDATA="${{PGDATA:-/var/lib/postgresql/data}}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb -D "$PGDATA" -U "${{POSTGRES_USER:-postgres}}" --auth=trust -E UTF8 --locale=C --no-sync >/tmp/initdb.log 2>&1
fi
exec postgres -D "$PGDATA" -c listen_addresses= -c unix_socket_directories=/var/run/postgresql -c fsync=off
"""
REPOSITORY = "cargohold-test/postgres"  # named so: the recipe knows images by name


def _libraries(paths) -> set[Path]:
    libs = set()
    for path in paths:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            candidate = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
            if candidate.startswith("/"):
                libs.add(Path(candidate))
    return libs


def _files() -> list[Path]:
    files = set(BINARIES) | set(MODULES) | set(ZONES) | {BUSYBOX}
    for tree in TREES:
        files |= {p for p in tree.rglob("*") if p.is_file()}
    files |= _libraries([*BINARIES, *MODULES])
    return sorted(files)


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256(ENTRYPOINT.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


def _add_dir(tar: tarfile.TarFile, name: str, *, uid: int = 0, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, uid
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _rootfs(files: list[Path]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc", "usr", "var", "var/run", "var/lib", "var/lib/postgresql"):
            _add_dir(tar, d)
        _add_dir(tar, "tmp", mode=0o1777)
        _add_dir(tar, "var/run/postgresql", uid=POSTGRES_UID, mode=0o2775)
        _add_dir(tar, "var/lib/postgresql/data", uid=POSTGRES_UID, mode=0o700)
        for f in files:
            real = f.resolve()
            tar.add(str(real), arcname=str(f).lstrip("/"), recursive=False)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        _add_bytes(tar, "etc/passwd", f"root:x:0:0:root:/root:/bin/sh\npostgres:x:{POSTGRES_UID}:{POSTGRES_UID}:"
                                      "postgres:/var/lib/postgresql:/bin/sh\n".encode())
        _add_bytes(tar, "etc/group", f"root:x:0:\npostgres:x:{POSTGRES_UID}:\n".encode())
        _add_bytes(tar, "entrypoint.sh", ENTRYPOINT.encode(), mode=0o755)
    return buf.getvalue()


def ensure_image() -> str:
    """The test database image's tag, built if this machine does not have it yet."""
    files = _files()
    tag = f"{REPOSITORY}:{_digest(files)}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    subprocess.run(
        ["docker", "import",
         "--change", f"ENV PATH={PG}/bin:/usr/bin:/bin",
         "--change", "ENV LANG=C",
         "--change", f"USER {POSTGRES_UID}",
         "--change", 'CMD ["/entrypoint.sh"]',
         "-", tag],
        input=_rootfs(files), check=True, capture_output=True, timeout=300,
    )
    return tag


# --- a PostgreSQL server of this image, for tests -----------------------------------------------

SECRET = "s3cret-pw-xyz"  # in the server's environment: must never reach a log, a page or a command line


def psql(ctr: str, sql: str) -> str:
    from tests import dockercli

    return dockercli.docker("exec", ctr, "psql", "-X", "-A", "-t", "-U", "postgres", "-c", sql)


def postgres_container(image: str) -> tuple[str, str]:
    """(volume, container): a running server with its data in a new volume, in the mirror."""
    from tests import dockercli
    from tests.conftest import wait_for
    from volumes.services import mirror_sync

    volume = dockercli.create_volume()
    ctr = dockercli.unique_name("pg")
    dockercli.docker("run", "-d", "--name", ctr, "--label", dockercli.TEST_LABEL, "--network", "none",
                     "-e", f"POSTGRES_PASSWORD={SECRET}", "-v", f"{volume}:/var/lib/postgresql/data", image)
    wait_for(lambda: "accepting" in dockercli.docker("exec", ctr, "pg_isready", check=False), timeout=60,
             message="postgres to accept connections")
    mirror_sync()
    return volume, ctr
