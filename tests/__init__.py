
# Every process that imports the tests (pytest's, and the helpers it spawns: a drainer, a "beat", an API)
# looks into the database as an operator does (every tenant's rows); the API requests they make and the
# workers they start are scoped like in production (aos/db/scope.py, tests/db/test_rls.py).
from aos.db import scope as _scope  # noqa: E402

_scope.set_process_default(_scope.OPERATOR)
