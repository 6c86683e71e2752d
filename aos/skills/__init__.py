"""Skills: versioned units of work a plan step calls."""
