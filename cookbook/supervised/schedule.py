"""Learning-rate schedules with the reference's exact multipliers (``utils/lr_scheduling.py``).

No warmup, and the linear schedule never reaches zero: the last step trains at
``learning_rate / total_steps``. Parity layer (c) pins these numbers to the reference.
"""

from __future__ import annotations

import math

from cookbook.exceptions import ConfigurationError
from cookbook.specs.recipe import LRSchedule


def lr_multiplier(schedule: LRSchedule | str, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at 0-indexed global ``step``."""
    if total_steps <= 0:
        raise ConfigurationError(f"total_steps must be positive, got {total_steps}")
    match LRSchedule(schedule):
        case LRSchedule.LINEAR:
            return 1 - step / total_steps
        case LRSchedule.COSINE:
            return 0.5 * (1 + math.cos(math.pi * step / total_steps))
        case LRSchedule.CONSTANT:
            return 1.0
