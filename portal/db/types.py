"""Column types shared by the models."""

from __future__ import annotations

import enum

from sqlalchemy import Enum


def string_enum(enum_cls: type[enum.Enum], name: str, length: int = 20) -> Enum:
    """A VARCHAR with a CHECK constraint listing the enum's values (no native PG enum type,
    so adding a value is a constraint change, not an ``ALTER TYPE``)."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )
