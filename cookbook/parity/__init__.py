"""Parity machinery: golden format, renderer records, per-token diffs, invariants."""
