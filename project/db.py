def save_fields(row, **fields) -> None:
    """Set `fields` on a model row and write only those columns (job handlers mark
    progress on their own rows this way, never clobbering columns others write)."""
    for name, value in fields.items():
        setattr(row, name, value)
    row.save(update_fields=list(fields))
