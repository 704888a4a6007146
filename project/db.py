def save_fields(row, **fields) -> None:
    """Set `fields` on a model row and write only those columns (job handlers mark
    progress on their own rows this way, never clobbering columns others write)."""
    for name, value in fields.items():
        setattr(row, name, value)
    row.save(update_fields=list(fields))


def by_code_point(field: str):
    """An ORDER BY term for text that sorts as Python's sort does (by code point): SQLite's
    default collation does; PostgreSQL's database collation (en_US…) would not."""
    from django.db import connection
    from django.db.models import F
    from django.db.models.functions import Collate

    return Collate(field, "C") if connection.vendor == "postgresql" else F(field)
