"""Ready-made experiments built from the engine's parts."""
