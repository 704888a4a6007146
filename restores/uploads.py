"""Uploads stream straight to the staging folder (UPLOAD_DIR): never held in memory, never
in /tmp (which may be small or a tmpfs), and cut off at UPLOAD_MAX_BYTES.

The web process only writes there; a worker imports the file into backup storage (in the
Compose deployment the web container mounts the backups read-only).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from backups.imports import upload_dir


class StagedUpload(UploadedFile):
    def __init__(self, path: Path, name: str, size: int, content_type: str | None):
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.staged_path = path

    def open(self, mode="rb"):  # noqa: A003 (Django's name)
        self.file = open(self.staged_path, mode)
        return self


class StagingUploadHandler(FileUploadHandler):
    """Writes each uploaded file to UPLOAD_DIR/upload-<hex>.partial as it arrives."""

    chunk_size = 1 << 20

    def __init__(self, request=None, *, limit: int):
        super().__init__(request)
        self.limit = limit
        self.too_large = False
        self._file = None
        self._path: Path | None = None
        self._size = 0
        self._total = 0  # all files of the request together count against the limit

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self._path = upload_dir() / f"upload-{uuid.uuid4().hex}.partial"
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self._file = os.fdopen(fd, "wb")
        self._size = 0

    def receive_data_chunk(self, raw_data, start):
        self._size += len(raw_data)
        self._total += len(raw_data)
        if self.limit and self._total > self.limit:
            self.too_large = True
            self._discard()
            raise StopUpload(connection_reset=False)
        self._file.write(raw_data)
        return None

    def file_complete(self, file_size):
        if self._file is None:
            return None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        return StagedUpload(self._path, self.file_name, self._size, self.content_type)

    def upload_interrupted(self):
        self._discard()

    def _discard(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
