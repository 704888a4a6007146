"""Sizes as a person reads them: binary units with their real names (`900 MiB`, not
`943724544 bytes`, nor Django's filesizeformat, which divides by 1024 and says "MB")."""

UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def human_size(n: int | float | None) -> str:
    """`1.5 GiB`, `900 MiB`, `12 KiB`, `512 bytes`; one decimal below 10 of a unit. None: ""."""
    if n is None:
        return ""
    n = int(n)
    if n < 0:
        return f"-{human_size(-n)}"
    for unit, factor in UNITS:
        if n >= factor:
            value = n / factor
            text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
            return f"{text.removesuffix('.0')} {unit}"
    return "1 byte" if n == 1 else f"{n} bytes"
