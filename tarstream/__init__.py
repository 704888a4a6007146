"""Tar streams, compressed or not: reading, checking, hashing and writing them.

The one place that knows the tar format, with one reader of its blocks (`TarWalker`).
Backups stream and verify through it as it is (`pack`, `verify_stream`), restores check
and write through it and imports check and store through it with the safety rules on
top (`TarScanner`, `tar_chunks`, `HashingReader`); the engine adapter sends
`LEAD_HEADER` first. Pure: no Django, no engine, no file system.

- headers: header blocks, checksums, pax records, the headers Cargohold writes;
- walker: `TarWalker`, the one block/header state machine: counts a stream, refuses a
  damaged or truncated one, at almost no cost per byte and nothing kept per member;
- scanner: `TarScanner`, the walker plus the rules for untrusted streams (paths, links,
  devices, layouts, expansion limits; names rewritten for the ./ layout);
- compression: compressors (zstd optionally in independent frames), format detection,
  bounded decompression;
- frames: the zstd frame walker (where each frame starts, read as the bytes pass) and
  frame-by-frame decompression;
- index: `IndexingWalker`, the walker handing every member's file-index entry to a sink;
- hashing: SHA-256 while reading or writing;
- limits: how far an untrusted archive may expand;
- pipeline: `pack`, `store_compressed` and `verify_stream`.
"""

from tarstream.compression import (
    CHUNK_SIZE, COMPRESSIONS, EXTENSIONS, FORMAT_NAMES, FORMATS, GZIP_LEVEL, MEDIA_TYPES, ZSTD_LEVEL, compressor,
    detect_compression, detect_format, iter_decompressed, tar_chunks,
)
from tarstream.hashing import ChunkFile, HashingReader, HashingWriter
from tarstream.headers import BLOCK, LEAD_HEADER, ArchiveError, member_header
from tarstream.limits import ArchiveTooLarge, ExpansionLimit, size_text, untrusted_limit
from tarstream.pipeline import PackResult, VerifyResult, pack, store_compressed, verify_stream
from tarstream.scanner import Layout, Member, ScanResult, TarScanner, UnsafeArchive
from tarstream.walker import TarStats, TarWalker

__all__ = [
    "BLOCK", "CHUNK_SIZE", "COMPRESSIONS", "EXTENSIONS", "FORMATS", "FORMAT_NAMES", "GZIP_LEVEL", "LEAD_HEADER",
    "MEDIA_TYPES", "ZSTD_LEVEL", "ArchiveError", "ArchiveTooLarge", "ChunkFile", "ExpansionLimit", "HashingReader",
    "HashingWriter", "Layout", "Member", "PackResult", "ScanResult", "TarScanner", "TarStats", "TarWalker",
    "UnsafeArchive", "VerifyResult", "compressor", "detect_compression", "detect_format", "iter_decompressed",
    "member_header", "pack", "size_text", "store_compressed", "tar_chunks", "untrusted_limit", "verify_stream",
]
