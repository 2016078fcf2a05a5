"""Recipes mirroring the reference's tinker_cookbook.recipes (environments and rewards)."""
