"""Model commands: list-models, info, doctor (filled in by the model package)."""
