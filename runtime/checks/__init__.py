"""Release checks: parity of every artifact of a bundle against its float model and goldens."""
