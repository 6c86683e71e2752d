"""The `aos` command: thin click commands onto aos.services (local work) and aos.sdk (the HTTP API)."""
