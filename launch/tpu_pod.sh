#!/usr/bin/env bash
# Runs one experiment on every worker of a Cloud TPU VM pod slice (all hosts start the same command;
# --distributed makes each call jax.distributed.initialize(), which finds the pod's coordinator).
#
#   launch/tpu_pod.sh setup TPU_NAME ZONE                       # copy this checkout, install .[tpu]
#   launch/tpu_pod.sh run TPU_NAME ZONE CONFIG WORKDIR [FLAGS]   # e.g. configs/fusion.py:coco /mnt/shared/run1
#
# WORKDIR must be one directory every host sees (a shared filesystem or gcsfuse mount): Orbax writes
# one checkpoint from all hosts together, and only host 0 writes metrics, figures and the report.
set -euo pipefail
action=${1:?usage: tpu_pod.sh setup|run TPU_NAME ZONE ...}
tpu=${2:?TPU_NAME}
zone=${3:?ZONE}
remote_dir=${REMOTE_DIR:-ctxfuse_jax}
ssh_all() { gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "$1"; }

case "$action" in
  setup)
    root=$(cd "$(dirname "$0")/.." && pwd)
    gcloud compute tpus tpu-vm scp --recurse "$root" "$tpu:$remote_dir" --zone "$zone" --worker=all
    ssh_all "cd $remote_dir && python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
    ;;
  run)
    config=${4:?CONFIG}
    workdir=${5:?WORKDIR}
    shift 5
    ssh_all "cd $remote_dir && .venv/bin/python -m ctxfuse_jax.main --distributed --config=$config --workdir=$workdir $*"
    ;;
  *)
    echo "unknown action '$action'; use setup or run" >&2
    exit 2
    ;;
esac
