"""Seed 002 (Cruz & Cardoso): a U-Net mask generator, then a classifier trained against adversarial backgrounds."""
