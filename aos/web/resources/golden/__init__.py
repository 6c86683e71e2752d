"""Golden files: record a run, verify a document, replay it."""
