"""cookbook-serve: a loopback Tinker-compatible server over the local backend."""
