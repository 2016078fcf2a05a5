"""Backends the training loop talks to through the tinker client surface.

``fake`` is deterministic, instant and offline: for tests, and for running the reference's own
loop and ours side by side in parity checks (:mod:`cookbook.backends.fake`).
"""
