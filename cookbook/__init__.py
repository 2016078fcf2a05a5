"""cookbook: a spec-driven re-implementation of the tinker-cookbook reference slice."""

__version__ = "0.1.0"
