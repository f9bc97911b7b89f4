"""Application layer: the run pipeline, the audit, chaos and bench."""
