"""Scoring models: accuracy and latency, failure analysis, cross-validation, reduced-decode checks, comparison reports."""
