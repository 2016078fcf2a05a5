"""What every recipe run shares, whatever its training loop: backends and clients, the run
directory and its resume/overwrite rule, config.json, banner, progress and plots."""
