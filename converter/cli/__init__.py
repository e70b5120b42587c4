"""The console scripts, one module each; argument parsing lives only here (``python -m converter.cli.<module>`` runs one)."""
