"""Supervised fine-tuning: datums from conversations, the training loop, its metrics."""
