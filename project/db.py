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


def count_where(inner, counts: dict[str, tuple[str, list]], *, sums: dict[str, tuple[str, list]] | None = None,
                join=None, on: str = "") -> dict:
    """One row of figures over the rows of the queryset `inner`, named v in the SQL:

    - `counts`: key -> (SQL condition, its params): how many rows meet it;
    - `sums`: key -> (SQL condition, its params): the sum of v.size_bytes over those rows;
    - `join`: a queryset LEFT JOINed as b `on` an SQL condition (e.g. each volume's last backup).

    The querysets' own SQL, so scoping and annotations stay the ORM's. Why not aggregate():
    over annotations it inlines each annotation into every count that names it, and an IN
    list over 30,000 backups was then read once for each; a joined GROUP BY is read once.
    (SQLite may still flatten `inner` and repeat a costly per-row annotation in each count
    that names it: keep those cheap, e.g. uncorrelated IN lists.) Conditions use TRUE-free
    SQL ("1 = 1") that both SQLite and PostgreSQL read."""
    from django.db import connection

    columns, column_params = [], []
    for condition, values in counts.values():
        columns.append(f"COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)")
        column_params += values
    for condition, values in (sums or {}).values():
        columns.append(f"SUM(CASE WHEN {condition} THEN v.size_bytes END)")
        column_params += values
    sql, params = inner.query.sql_with_params()
    clause, params = f"FROM ({sql}) v", list(params)
    if join is not None:
        join_sql, join_params = join.query.sql_with_params()
        clause += f" LEFT JOIN ({join_sql}) b ON {on}"
        params += join_params
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} {clause}", [*column_params, *params])
        row = cursor.fetchone()
    return dict(zip([*counts, *(sums or {})], row))
