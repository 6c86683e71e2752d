"""How alembic compares the models with the database: the two pgvector-dependent objects.

With pgvector the embedding column is ``vector(N)`` and has an HNSW index; without
it the column is ``float8[]`` and has none. Both are right, so ``aos db check``
(and autogenerate) must not report either as a difference.
"""

from __future__ import annotations

from typing import Any

import pgvector.sqlalchemy  # noqa: F401 — registers `vector` so reflection recognises the column

from aos.db.types import Embedding

PGVECTOR_ONLY_INDEXES = frozenset({"ix_failure_patterns_embedding_hnsw"})


def compare_type(ctx: Any, inspected_column: Any, metadata_column: Any, inspected_type: Any,
                 metadata_type: Any) -> bool | None:
    if isinstance(metadata_type, Embedding):
        return False
    return None  # alembic's default comparison


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "index" and name in PGVECTOR_ONLY_INDEXES)
