"""How far an untrusted archive may expand: decompression bombs are refused while the
check pass reads the stream, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from project.errors import CargoholdError


class ArchiveTooLarge(CargoholdError):
    """The archive expands to more than it may: refused, nothing written."""


def size_text(n: int) -> str:
    """Bytes for a message: exact, and in binary units a person reads."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n} bytes ({n / factor:.1f} {unit})"
    return f"{n} bytes"


@dataclass(frozen=True)
class ExpansionLimit:
    """At most `max_bytes` of uncompressed tar stream; `reason` says where the number comes from."""

    max_bytes: int
    reason: str
    hint: str = ""

    def check(self, expanded: int) -> None:
        if expanded > self.max_bytes:
            raise ArchiveTooLarge(
                f"Refused: the archive expands to more than {size_text(self.max_bytes)}, {self.reason} "
                f"(at least {size_text(expanded)}); nothing was written.{(' ' + self.hint) if self.hint else ''}"
            )


def untrusted_limit(compressed_bytes: int, *, ratio: int, cap: int, floor: int,
                    override: int | None = None) -> ExpansionLimit:
    """The limit for an archive without a trusted record of its size (an import).

    `ratio` times the compressed size, but never less than `floor` (small archives are
    harmless whatever their ratio) nor more than `cap`; `override` (an Admin's, for one
    import) replaces all three.
    """
    hint = "An Admin can raise the limit for one import."
    if override:
        return ExpansionLimit(override, "the limit an Admin set for this import")
    by_ratio = max(floor, ratio * compressed_bytes)
    if by_ratio < cap:
        why = (f"{ratio} times its compressed size of {size_text(compressed_bytes)} (IMPORT_MAX_EXPANSION_RATIO)"
               if by_ratio > floor else "the IMPORT_EXPANSION_FREE_BYTES any archive may expand to")
        return ExpansionLimit(by_ratio, why, hint)
    return ExpansionLimit(cap, "the most any import may expand to (IMPORT_MAX_EXPANDED_BYTES)", hint)
