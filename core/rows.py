"""Model instances from hand-written SQL, for the hottest request paths.

The ORM spends roughly a millisecond of Python compiling each statement, more than PostgreSQL
spends running an indexed look-up. The annotator's ``next`` and submit (``annotation.services.
queue`` and ``.judgments``) and the token check every API request makes (``core.authentication``)
run a fixed handful of statements, so those are written once as SQL and their rows become
ordinary model instances here, through each field's own database converters: the same code
reads PostgreSQL's and SQLite's values.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model


class Columns:
    """One model's concrete columns under a table alias: the SELECT list, and the instance
    built back from the row slice that list produced (in ``Model._meta.concrete_fields`` order)."""

    def __init__(self, model: type[Model], alias: str) -> None:
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.sql = ", ".join(f'{alias}."{f.column}"' for f in self.fields)
        self.width = len(self.fields)
        self._converters: dict[str, list[tuple[int, list, Any]]] = {}

    def _converters_for(self) -> list[tuple[int, list, Any]]:
        """(position, converters, column expression) per field that needs converting, per backend."""
        vendor = connection.vendor
        if vendor not in self._converters:
            table = self.model._meta.db_table
            out = []
            for i, field in enumerate(self.fields):
                col = field.get_col(table)
                funcs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if funcs:
                    out.append((i, funcs, col))
            self._converters[vendor] = out
        return self._converters[vendor]

    def load(self, row: Sequence, start: int = 0) -> Model:
        """The instance in ``row[start:start + width]``, as if the ORM had read it."""
        values = list(row[start:start + self.width])
        for i, funcs, col in self._converters_for():
            value = values[i]
            for func in funcs:
                value = func(value, col, connection)
            values[i] = value
        return self.model.from_db(connection.alias, None, values)


def cache_related(instance: Model, name: str, value: Model) -> None:
    """Attach a related object as ``select_related`` would (no query when it is read)."""
    instance._meta.get_field(name).set_cached_value(instance, value)


def prep(model: type[Model], name: str, value: Any) -> Any:
    """``value`` as the database takes it for ``model.name`` (JSON, UUID and datetime differ per backend)."""
    return model._meta.get_field(name).get_db_prep_save(value, connection)


def for_update(of: str = "", *, skip_locked: bool = False) -> str:
    """The row-lock clause where the database has one (PostgreSQL); SQLite serialises writers
    itself and has no such clause, which is also what the ORM's ``select_for_update`` does there."""
    if not connection.features.has_select_for_update:
        return ""
    clause = " FOR UPDATE"
    if of and connection.features.has_select_for_update_of:
        clause += f" OF {of}"
    if skip_locked and connection.features.has_select_for_update_skip_locked:
        clause += " SKIP LOCKED"
    return clause


def fetch(sql: str, params: Sequence = ()) -> list[tuple]:
    """All rows of one query through Django's cursor (so statement counters and the
    database-unavailable handling see it like any ORM statement)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def run(sql: str, params: Sequence = ()) -> int:
    """Run one statement that returns no rows (an UPDATE); returns the rows it touched."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
