"""A repository's URL, parsed (pure): a local path, or restic's S3 syntax
`s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]` (used for both formats)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from project.errors import CargoholdError


class BadLocation(CargoholdError):
    pass


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$")


@dataclass(frozen=True)
class Location:
    kind: str  # "local" or "s3"
    path: str = ""  # local: an absolute path on the worker's (and engine's) machine
    endpoint: str = ""  # s3: http(s)://host[:port]
    bucket: str = ""
    prefix: str = ""  # s3: "" or "a/b" (no slashes around)

    @property
    def is_s3(self) -> bool:
        return self.kind == "s3"

    def url(self) -> str:
        if self.kind == "local":
            return self.path
        tail = f"/{self.prefix}" if self.prefix else ""
        return f"s3:{self.endpoint}/{self.bucket}{tail}"


def parse_location(url: str) -> Location:
    """Parse and check; raises BadLocation with a message a person can act on."""
    url = (url or "").strip()
    if not url:
        raise BadLocation("Give the repository's location: a local path, or s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX].")
    if "\x00" in url or any(c in url for c in "\r\n\t"):
        raise BadLocation("The location has control characters.")
    if url.startswith("s3:"):
        parts = urlsplit(url[3:])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadLocation(f"{url!r}: S3 locations look like s3:https://HOST[:PORT]/BUCKET[/PREFIX].")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise BadLocation("Put no credentials, query or fragment in the URL: keys are entered separately.")
        try:
            port = parts.port
        except ValueError:
            raise BadLocation(f"{url!r}: the port is not a number.") from None
        segments = [s for s in parts.path.split("/") if s]
        if not segments:
            raise BadLocation(f"{url!r} names no bucket: s3:https://HOST[:PORT]/BUCKET[/PREFIX].")
        bucket, prefix = segments[0], segments[1:]
        if not _BUCKET.match(bucket):
            raise BadLocation(f"{bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, dots, dashes).")
        if len(prefix) > 4 or not all(_PREFIX_PART.match(p) for p in prefix):
            raise BadLocation("The prefix may have up to 4 parts of letters, digits and . _ + -.")
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        endpoint = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
        return Location(kind="s3", endpoint=endpoint, bucket=bucket, prefix="/".join(prefix))
    if "://" in url or url.startswith(("sftp:", "rest:", "b2:", "azure:", "gs:", "rclone:", "swift:")):
        raise BadLocation(f"{url!r}: only local paths and s3: locations are supported.")
    path = PurePosixPath(url)
    if not path.is_absolute() or ".." in path.parts:
        raise BadLocation(f"{url!r}: a local location must be an absolute path without '..'.")
    if str(path) == "/" or path.parts[1] in ("proc", "sys", "dev", "etc", "bin", "sbin", "usr", "boot", "lib", "lib64", "run"):
        raise BadLocation(f"{url!r}: refusing a system folder as a repository.")
    return Location(kind="local", path=str(path))
