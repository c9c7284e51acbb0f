"""Small helpers shared by every stage: atomic file writes, explicit random generators, versions."""
