"""Seed 001 (Vasiljevic, Chakrabarti & Shakhnarovich 2016): how blur hurts a VGG-16 and how fine-tuning mends it."""
