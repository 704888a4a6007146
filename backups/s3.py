"""Archives in an S3 bucket (AWS, MinIO, SeaweedFS, Ceph, Garage...): `S3Storage`.

The same contract as the local folder (backups.storage):

- A writer streams into a **multipart upload** under the final key, with bounded memory:
  one part (PART_SIZE, 8 MiB, growing after each 1,000 parts) is being filled while at most one other is being sent by
  a background thread, so the worker holds about two parts whatever the archive's size.
  An object smaller than one part goes up with a single PUT at commit.
- `commit()` completes the upload, and refuses to overwrite an existing key (a HEAD
  first, and `If-None-Match: *` on servers that honour it). Until then nothing exists
  under the key: an interrupted upload is an unfinished multipart upload, which S3 never
  lists as an object, so it is never listed as a backup.
- Each multipart upload has a small **marker** object, `<prefix>/.cargohold-tmp/<token>/<id>`
  (the writer's token and the upload's key and id), so `remove_temp_files` can tell whose
  upload it is and abort those of dead jobs; uploads without a marker are judged by age.
- Reads stream (`open_reader`, `open_range` with an HTTP Range), so the SHA-256 read-back
  works in chunks.

Every boto error becomes a `StorageError` that says what to do (wrong keys, a bucket that
does not exist, a server that went away); secrets never appear in them.

Over 450 lines on purpose: one Storage implementation (writer, reader, listing, clean-up, error translation) that only makes sense whole; split candidates are the reader and the error table.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import boto3
import botocore
import botocore.exceptions
import urllib3.exceptions
from botocore.config import Config

from backups.storage import (
    _KEY_PART,
    Storage,
    StorageError,
    StoredObject,
    TempWriter,
    check_key,
)
from project.redact import scrubbed_text

logger = logging.getLogger(__name__)

MiB = 1 << 20
PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's minimum for every part but the last
MAX_PARTS = 10_000  # S3's maximum: with parts growing from 8 MiB (part_size), archives up to 430 GiB
TEMP_DIR = ".cargohold-tmp"  # marker objects of multipart uploads in progress
# A dead server fails a job within about a minute: three tries of at most ~20 s each.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 20
MAX_ATTEMPTS = 3

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
               "AuthorizationHeaderMalformed", "InvalidSecurity"}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,  # includes ConnectTimeoutError
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ResponseStreamingError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
)


_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


def _client(**kwargs):
    """An S3 client from one shared session (its service models are loaded once; making a
    client costs a third); sessions are not thread-safe, hence the lock."""
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


def _error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {}) or {}
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
    return str(error.get("Code", "") or status), int(status)


class S3Storage(Storage):
    """Archives under `prefix` in one bucket of an S3-compatible server."""

    name = "s3"

    def __init__(self, *, endpoint: str, bucket: str, prefix: str = "", region: str = "",
                 path_style: bool = True, access_key_id: str = "", secret_access_key: str = "",
                 part_size: int = PART_SIZE, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, max_attempts: int = MAX_ATTEMPTS, repository_name: str = ""):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts are at least {MIN_PART_SIZE} bytes")
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.repository_name = repository_name
        # The keys themselves live only inside the client: never on self, never in a message.
        self._has_keys = bool(access_key_id and secret_access_key)
        config = Config(
            s3={"addressing_style": "path" if path_style else "virtual"},
            # Without keys: anonymous requests, never the worker's own AWS credentials.
            **({} if self._has_keys else {"signature_version": botocore.UNSIGNED}),
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Self-hosted servers differ in the new default checksums; the archive's own
            # SHA-256 is read back after every upload anyway.
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
            max_pool_connections=4,
        )
        self._client = _client(
            endpoint_url=self.endpoint, region_name=region or "us-east-1",
            aws_access_key_id=access_key_id if self._has_keys else None,
            aws_secret_access_key=secret_access_key if self._has_keys else None, config=config,
        )

    @classmethod
    def for_repository(cls, repo, **kwargs) -> S3Storage:
        location = repo.location
        if not location.is_s3:
            raise StorageError(f"{repo.name} is not an S3 repository.")
        from django.conf import settings

        kwargs.setdefault("part_size", max(MIN_PART_SIZE, getattr(settings, "S3_PART_SIZE", PART_SIZE)))
        secrets = repo.secrets()
        return cls(endpoint=location.endpoint, bucket=location.bucket, prefix=location.prefix,
                   region=repo.region, path_style=repo.path_style, access_key_id=secrets["access_key_id"],
                   secret_access_key=secrets["secret_access_key"], repository_name=repo.name, **kwargs)

    # --- names --------------------------------------------------------------------------

    def object_name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _base(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def location(self, key: str) -> str:
        return f"s3:{self.endpoint}/{self.bucket}/{self.object_name(key)}"

    def _where(self) -> str:
        return f"{self.endpoint}/{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    # --- errors ---------------------------------------------------------------------------

    def explain(self, exc: Exception, action: str, *, key: str = "", uploading: bool = False) -> StorageError:
        """A StorageError a person can act on for a boto exception raised while `action`."""
        what = f"s3:{self._where()}"
        if key:
            try:
                what = self.location(key)
            except StorageError:  # a name we did not make (a marker, an odd object)
                what = f"s3:{self.endpoint}/{self.bucket}/{key}"
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, botocore.exceptions.ClientError):
            code, status = _error_code(exc)
            if code in _AUTH_CODES or (status == 403 and code in ("403", "Forbidden") and action.startswith("checking")):
                return StorageError(
                    f"The S3 server at {self.endpoint} refused the access key while {action} ({code}): "
                    f"check the key id and secret{self._of_repo()} (and that the key may use bucket {self.bucket})."
                )
            if code == "NoSuchBucket":
                return self._no_bucket()
            if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchUpload"):
                return StorageError(f"The archive {what} is missing from storage.")
            if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") and not self._has_keys:
                return StorageError(f"No S3 access key is set{self._of_repo().replace(' of ', ' for ', 1)}: "
                                    "enter the key id and secret.")
            if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
                return StorageError(
                    f"The S3 server at {self.endpoint} denied {action} in bucket {self.bucket} ({code}): "
                    f"give the access key{self._of_repo()} read, write, list and delete rights there."
                )
            message = scrubbed_text(exc.response.get("Error", {}).get("Message", "")) or "no explanation"
            return StorageError(f"The S3 server at {self.endpoint} answered {code} while {action} ({what}): {message}.")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageError(f"No S3 access key is set{self._of_repo().replace(' of ', ' for ', 1)}: "
                                    "enter the key id and secret.")
        if isinstance(exc, _CONNECTION_ERRORS):
            reason = type(exc).__name__
            if uploading:
                return StorageError(
                    f"Lost the connection to the S3 server at {self.endpoint} while {action} ({reason}); "
                    f"nothing was stored. Check that the server is running and reachable from this worker."
                )
            return StorageError(
                f"Could not reach the S3 server at {self.endpoint} while {action} ({reason}): "
                f"check that it is running and reachable from this worker."
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return StorageError(f"S3 error at {self.endpoint} while {action}: {scrubbed_text(exc)}.")
        return StorageError(f"S3 error at {self.endpoint} while {action}: {type(exc).__name__}.")

    def _of_repo(self) -> str:
        return f" of repository {self.repository_name}" if self.repository_name else ""

    def _no_bucket(self) -> StorageError:
        return StorageError(
            f"The bucket {self.bucket} does not exist at {self.endpoint}: create it, or fix the URL{self._of_repo()}."
        )

    def call(self, action: str, method: str, *, key: str = "", uploading: bool = False, **params):
        """One S3 call (the client's `method`), its errors explained."""
        try:
            return getattr(self._client, method)(Bucket=self.bucket, **params)
        except Exception as exc:
            raise self.explain(exc, action, key=key, uploading=uploading) from None

    def check_bucket(self) -> None:
        """The bucket exists and the keys open it (some servers create buckets on a first
        write: a typo in the URL must not become a new bucket)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code, status = _error_code(exc)
            if status == 404 or code in ("NoSuchBucket", "404", "NotFound"):
                raise self._no_bucket() from None
            raise self.explain(exc, "checking the bucket") from None
        except Exception as exc:
            raise self.explain(exc, "checking the bucket") from None

    # --- Storage --------------------------------------------------------------------------

    def open_temp_writer(self, key: str, *, token: str = "") -> S3TempWriter:
        if token and not _KEY_PART.match(token):
            raise StorageError("Invalid temporary-file token.")
        self.object_name(key)
        self.check_bucket()
        return S3TempWriter(self, key, token)

    def open_reader(self, key: str) -> BinaryIO:
        response = self.call(f"opening {key}", "get_object", key=key, Key=self.object_name(key))
        return S3Reader(self, key, response["Body"])

    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        if start < 0 or length < 0:
            raise StorageError("A range starts at 0 or later and has a length of 0 or more.")
        if length == 0:
            self.stat(key)
            return io.BytesIO(b"")
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.object_name(key),
                                               Range=f"bytes={start}-{start + length - 1}")
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc)[0] == "InvalidRange" or _error_code(exc)[1] == 416:
                self.stat(key)  # past the end of an object that exists: nothing to read
                return io.BytesIO(b"")
            raise self.explain(exc, f"reading part of {key}", key=key) from None
        except Exception as exc:
            raise self.explain(exc, f"reading part of {key}", key=key) from None
        if response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 206 and start:
            response["Body"].close()
            raise StorageError(f"The S3 server at {self.endpoint} ignored the byte range asked for {key}.")
        return S3Reader(self, key, response["Body"], limit=length)

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.object_name(key))
        except botocore.exceptions.ClientError as exc:
            code, status = _error_code(exc)
            if status == 404 or code in _NOT_FOUND_CODES:
                return False
            raise self.explain(exc, f"checking {key}", key=key) from None
        except Exception as exc:
            raise self.explain(exc, f"checking {key}", key=key) from None
        return True

    def stat(self, key: str) -> StoredObject:
        head = self.call(f"checking {key}", "head_object", key=key, Key=self.object_name(key))
        modified = head.get("LastModified")
        return StoredObject(key=key, size=int(head["ContentLength"]), modified=modified.timestamp() if modified else 0.0)

    def delete(self, key: str) -> bool:
        if not self.exists(key):
            return False
        self.call(f"deleting {key}", "delete_object", key=key, Key=self.object_name(key))
        return True

    def _objects(self, prefix: str) -> Iterator[dict]:
        params = {"Prefix": prefix}
        while True:
            page = self.call("listing the bucket", "list_objects_v2", **params)
            yield from page.get("Contents", []) or []
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        base = self._base()
        for obj in self._objects(base + prefix):
            key = obj["Key"][len(base):]
            if key.startswith(TEMP_DIR + "/"):
                continue
            try:
                yield check_key(key)
            except StorageError:
                logger.warning("ignoring %s in %s: not a name Cargohold writes", key, self._where())

    # --- unfinished uploads -----------------------------------------------------------------

    def marker_name(self, token: str, upload_id: str) -> str:
        digest = hashlib.sha256(upload_id.encode()).hexdigest()[:32]
        return f"{self._base()}{TEMP_DIR}/{token or 'none'}/{digest}"

    def uploads(self) -> Iterator[dict]:
        """The unfinished multipart uploads under the prefix (Key, UploadId, Initiated)."""
        params = {"Prefix": self._base()}
        while True:
            page = self.call("listing unfinished uploads", "list_multipart_uploads", **params)
            yield from page.get("Uploads", []) or []
            if not page.get("IsTruncated"):
                return
            params.update(KeyMarker=page.get("NextKeyMarker", ""), UploadIdMarker=page.get("NextUploadIdMarker", ""))

    def _abort_upload(self, object_name: str, upload_id: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=object_name, UploadId=upload_id)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc)[0] != "NoSuchUpload" and _error_code(exc)[1] != 404:
                raise self.explain(exc, "aborting an unfinished upload") from None
        except Exception as exc:
            raise self.explain(exc, "aborting an unfinished upload") from None

    def remove_temp_files(self, *, is_dead: Callable[[str, float], bool]) -> list[str]:
        """Abort the unfinished multipart uploads of dead writers: those whose marker names a
        token `is_dead` says is dead, and those without a marker by their age alone (token
        ""; a writer makes its marker right after starting its upload)."""
        now = time.time()
        removed: list[str] = []
        uploads = {(u["Key"], u["UploadId"]): u for u in self.uploads()}
        marked: set[tuple[str, str]] = set()
        for obj in self._objects(f"{self._base()}{TEMP_DIR}/"):
            parts = obj["Key"][len(self._base()) + len(TEMP_DIR) + 1:].split("/")
            token = "" if parts[0] == "none" else parts[0]
            try:
                with S3Reader(self, obj["Key"], self.call("reading an upload marker", "get_object",
                                                          Key=obj["Key"])["Body"]) as f:
                    info = json.loads(f.read(64 * 1024))
                upload = (str(info["object"]), str(info["upload_id"]))
            except StorageError as exc:
                if "missing from storage" in str(exc):
                    continue  # its writer just committed or aborted
                raise
            except (ValueError, KeyError, TypeError):
                logger.warning("ignoring the unreadable upload marker %s in %s", obj["Key"], self._where())
                continue
            marked.add(upload)
            modified = obj.get("LastModified")
            age = now - modified.timestamp() if modified else 0.0
            if not is_dead(token, age):
                continue
            if upload in uploads:
                self._abort_upload(*upload)
                removed.append(f"s3:{self.endpoint}/{self.bucket}/{upload[0]} (unfinished upload)")
            self.call("removing an upload marker", "delete_object", Key=obj["Key"])
        for upload, info in uploads.items():
            if upload in marked:
                continue
            initiated = info.get("Initiated")
            age = now - initiated.timestamp() if initiated else 0.0
            if is_dead("", age):
                self._abort_upload(*upload)
                removed.append(f"s3:{self.endpoint}/{self.bucket}/{upload[0]} (unfinished upload)")
        return removed


class S3Reader(io.RawIOBase):
    """A streamed GET as a binary file: read(n) in chunks; errors become StorageError;
    `limit` stops at a range's end whatever the server sends."""

    def __init__(self, storage: S3Storage, key: str, body, *, limit: int | None = None):
        super().__init__()
        self._storage = storage
        self._key = key
        self._body = body
        self._left = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed S3 object")
        if self._left is not None:
            if self._left <= 0:
                return b""
            size = self._left if size is None or size < 0 else min(size, self._left)
        try:
            data = self._body.read(size if size is not None and size >= 0 else None)
        except Exception as exc:
            raise self._storage.explain(exc, f"reading {self._key}", key=self._key) from None
        if self._left is not None:
            self._left -= len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            except Exception:
                pass
        super().close()


class S3TempWriter(TempWriter):
    """A streamed multipart upload (see the module's docstring). Not thread-safe: one
    writer thread, plus the one background thread that sends parts."""

    def __init__(self, storage: S3Storage, key: str, token: str):
        self.storage = storage
        self.key = key
        self.token = token
        self.object = storage.object_name(key)
        self.committed = False
        self.bytes_written = 0
        self.upload_id: str | None = None
        self.marker: str | None = None
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._pending: Future | None = None
        self._pending_size = 0
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # The most bytes this writer held at once (the part being filled plus the one
        # being sent): the memory bound, measurable by tests.
        self.peak_buffered = 0

    # --- writing ----------------------------------------------------------------------------

    def write(self, data) -> int:
        if self.committed:
            raise StorageError(f"{self.key} is already saved.")
        view = memoryview(data).cast("B")
        size = len(view)
        part = self.part_size()
        while view:
            room = part - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            self._note_peak()
            if len(self._buffer) >= part:
                self._send_part(final=False)
        self.bytes_written += size
        return size

    def part_size(self) -> int:
        """The size of the part being filled: the configured size for the first 1,000 parts,
        then twice it, and so on (S3 allows 10,000 parts): small archives cost little
        memory, and 8 MiB parts still reach 430 GiB."""
        return self.storage.part_size * (1 + len(self._parts) // 1000)

    def _note_peak(self) -> None:
        self.peak_buffered = max(self.peak_buffered, len(self._buffer) + self._pending_size)

    def _start_upload(self) -> None:
        s = self.storage
        response = s.call(f"uploading {self.key}", "create_multipart_upload", key=self.key, uploading=True,
                          Key=self.object, Metadata={"cargohold-token": self.token or ""})
        self.upload_id = response["UploadId"]
        # The marker says whose upload this is, for remove_temp_files after a crash.
        marker = s.marker_name(self.token, self.upload_id)
        body = json.dumps({"object": self.object, "upload_id": self.upload_id, "token": self.token,
                           "started": time.time()}).encode()
        s.call(f"uploading {self.key}", "put_object", key=self.key, uploading=True, Key=marker, Body=body)
        self.marker = marker
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")

    def _send_part(self, *, final: bool) -> None:
        """Hand the full buffer to the sending thread, after the previous part has gone."""
        if self.upload_id is None:
            self._start_upload()
        self._wait_pending()
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"{self.key} is larger than S3's {MAX_PARTS} parts allow "
                               f"(parts of {self.storage.part_size // MiB} MiB, growing each 1,000 parts).")
        body, self._buffer = self._buffer, bytearray()
        self._parts.append({"PartNumber": number})
        self._pending_size = len(body)
        self._pending = self._pool.submit(self._upload_part, number, body)
        self._note_peak()
        if final:
            self._wait_pending()

    def _upload_part(self, number: int, body: bytearray) -> str:
        response = self.storage.call(f"uploading {self.key}", "upload_part", key=self.key, uploading=True,
                                     Key=self.object, UploadId=self.upload_id, PartNumber=number, Body=body)
        return response["ETag"]

    def _wait_pending(self) -> None:
        if self._pending is None:
            return
        future, self._pending = self._pending, None
        try:
            etag = future.result()
        finally:
            self._pending_size = 0
        self._parts[-1]["ETag"] = etag

    # --- the end --------------------------------------------------------------------------------

    def commit(self) -> None:
        if self.committed:
            return
        s = self.storage
        if self.upload_id is None:
            self._refuse_existing()
            body, self._buffer = bytes(self._buffer), bytearray()
            self._conditional("put_object", Key=self.object, Body=body)
        else:
            if self._buffer or not self._parts:
                self._send_part(final=True)
            else:
                self._wait_pending()
            self._refuse_existing()
            self._conditional("complete_multipart_upload", Key=self.object, UploadId=self.upload_id,
                              MultipartUpload={"Parts": self._parts})
            self._close_pool()
            self._remove_marker()
        self.committed = True
        logger.debug("stored %s (%d bytes) at %s", self.key, self.bytes_written, s.location(self.key))

    def _refuse_existing(self) -> None:
        if self.storage.exists(self.key):
            raise StorageError(f"{self.storage.location(self.key)} already exists; refusing to overwrite it.")

    def _conditional(self, method: str, **params) -> None:
        """Write only if the key is still free (If-None-Match: *); servers that do not
        know the header get the call without it (the HEAD before was the check)."""
        action = f"saving {self.key}"
        try:
            self.storage._client.__getattribute__(method)(Bucket=self.storage.bucket, IfNoneMatch="*", **params)
            return
        except botocore.exceptions.ClientError as exc:
            code, status = _error_code(exc)
            if code in ("PreconditionFailed", "412") or status == 412:
                raise StorageError(
                    f"{self.storage.location(self.key)} already exists; refusing to overwrite it.") from None
            if code not in ("NotImplemented", "501") and status != 501:
                raise self.storage.explain(exc, action, key=self.key, uploading=True) from None
        except Exception as exc:
            raise self.storage.explain(exc, action, key=self.key, uploading=True) from None
        self.storage.call(action, method, key=self.key, uploading=True, **params)

    def abort(self) -> None:
        if self.committed:
            return
        self._buffer = bytearray()
        if self._pending is not None:
            try:
                self._pending.result()
            except Exception:
                pass
            self._pending = None
            self._pending_size = 0
        self._close_pool()
        if self.upload_id is not None:
            try:
                self.storage._abort_upload(self.object, self.upload_id)
                self._remove_marker()
            except StorageError as exc:
                # The server is gone: the unfinished upload lists nowhere as an object;
                # remove_temp_files aborts it later (its marker names this writer's token).
                logger.warning("could not abort the upload of %s (%s); the recovery step will", self.key, exc)
            self.upload_id = None

    def _remove_marker(self) -> None:
        if self.marker:
            try:
                self.storage.call("removing an upload marker", "delete_object", Key=self.marker)
            except StorageError as exc:
                logger.warning("could not remove the upload marker %s: %s", self.marker, exc)
            self.marker = None

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
