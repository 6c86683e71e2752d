"""Golden files: canonical, signed recordings of runs, verified and replayed (SPEC §4.5).

canonical  the one byte form of a JSON value (RFC 8785 style): what is hashed, signed and written
record     the document body of a run, per-step hashes, the whole-body hash
sign       HMAC-SHA256 with a key id, keys that can rotate
verify     signature first, then each step hash and the total, then the byte form
diff       the first divergence between two recordings, as a JSON path and both values
files      atomic writes (exclusive temp file, fsync, rename, fsync of the directory)
replay     a non-deterministic skill answered from the recording during a replay

Pure domain code: no Flask, no Celery, no database.
"""

FORMAT = "aos.golden/1"
