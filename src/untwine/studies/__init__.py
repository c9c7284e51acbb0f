"""Studies: the per-model pipeline (train -> representation -> metrics -> files) and sweeps over it."""
