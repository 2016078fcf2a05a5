"""Conversation datasets: sources (local JSONL, HuggingFaceH4/no_robots, packaged files),
Hugging Face-compatible shuffling, lazily rendered batches and the reference's builders."""
