"""The `aos` command: thin click commands onto aos.services."""
