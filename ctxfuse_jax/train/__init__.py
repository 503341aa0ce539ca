"""Training: players and their state, jittable steps, the resumable loop, checkpoints and data-parallel sharding."""
