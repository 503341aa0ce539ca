#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node, all GPUs of a node in that process.
# jax.distributed.initialize() (--distributed) reads the SLURM environment for the coordinator.
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm_gpus.sh configs/fusion.py:coco /shared/runs/coco
#
# DRY_RUN=1 prints the srun command it would run (shell-quoted) and runs nothing; it needs no SLURM:
#   DRY_RUN=1 bash launch/slurm_gpus.sh configs/fusion.py:coco /shared/runs/coco
#
#SBATCH --ntasks-per-node=1
#SBATCH --job-name=ctxfuse
set -euo pipefail
usage="usage: slurm_gpus.sh CONFIG WORKDIR [FLAGS]"
config=${1:?CONFIG missing; $usage}
workdir=${2:?WORKDIR (a directory all nodes see) missing; $usage}
shift 2
# Every external command goes through run: executed, or with DRY_RUN=1 only printed, shell-quoted.
quote() { printf '%q' "$1"; shift; if (($#)); then printf ' %q' "$@"; fi; }
run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then quote "$@"; echo; else "$@"; fi; }
run srun python -m ctxfuse_jax.main --distributed --config="$config" --workdir="$workdir" "$@"
