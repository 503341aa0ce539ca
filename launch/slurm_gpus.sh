#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node, all GPUs of a node in that process.
# jax.distributed.initialize() (--distributed) reads the SLURM environment for the coordinator.
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm_gpus.sh configs/fusion.py:coco /shared/runs/coco
#
#SBATCH --ntasks-per-node=1
#SBATCH --job-name=ctxfuse
set -euo pipefail
config=${1:?CONFIG}
workdir=${2:?WORKDIR (a directory all nodes see)}
shift 2
srun python -m ctxfuse_jax.main --distributed --config="$config" --workdir="$workdir" "$@"
