"""Column types shared by the models."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeDecorator, UserDefinedType

EMBEDDING_DIM = 1536  # OpenAI text-embedding-3-small


class _Vector(UserDefinedType):
    cache_ok = True

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def get_col_spec(self, **kw: Any) -> str:
        return f"vector({self.dim})"


class Embedding(TypeDecorator):
    """An embedding: pgvector ``vector(N)`` where the extension exists, ``float8[]`` where it does not.

    The migration picks the column type from what the server has; this type reads
    and writes both as a list of floats (pgvector accepts the ``[x,y,…]`` text form),
    so the code above it never needs to know which one it got.
    """

    impl = ARRAY(Float)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return None if value is None else [float(x) for x in value]

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        # ARRAY(Float)'s own processor cannot read pgvector's type: read both forms ourselves.
        return lambda value: self.process_result_value(value, dialect)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):  # pgvector's text form
            return [float(x) for x in value.strip("[]").split(",") if x]
        return [float(x) for x in value]


def vector_type(dim: int = EMBEDDING_DIM) -> _Vector:
    return _Vector(dim)

