"""Math RL: the arithmetic and GSM8K environments and the answer grading that scores them."""
