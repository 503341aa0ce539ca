#!/usr/bin/env bash
# Runs one experiment on every worker of a Cloud TPU VM pod slice (all hosts start the same command;
# --distributed makes each call jax.distributed.initialize(), which finds the pod's coordinator).
#
#   launch/tpu_pod.sh setup TPU_NAME ZONE                       # copy this checkout, install .[tpu]
#   launch/tpu_pod.sh run TPU_NAME ZONE CONFIG WORKDIR [FLAGS]   # e.g. configs/fusion.py:coco /mnt/shared/run1
#
# WORKDIR must be one directory every host sees (a shared filesystem or gcsfuse mount): Orbax writes
# one checkpoint from all hosts together, and only host 0 writes metrics, figures and the report.
# FLAGS reach the remote python as given (each is quoted for the remote shell, spaces included).
# REMOTE_DIR (default ctxfuse_jax) is the checkout's directory on the workers, relative to home.
# DRY_RUN=1 prints each gcloud command it would run, one per line and shell-quoted, and runs nothing.
set -euo pipefail
usage="usage: tpu_pod.sh setup TPU_NAME ZONE | tpu_pod.sh run TPU_NAME ZONE CONFIG WORKDIR [FLAGS]"
action=${1:?$usage}
tpu=${2:?TPU_NAME missing; $usage}
zone=${3:?ZONE missing; $usage}
remote_dir=${REMOTE_DIR:-ctxfuse_jax}
# Every external command goes through run: executed, or with DRY_RUN=1 only printed, shell-quoted.
quote() { printf '%q' "$1"; shift; if (($#)); then printf ' %q' "$@"; fi; }
run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then quote "$@"; echo; else "$@"; fi; }
ssh_all() { run gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "$1"; }

case "$action" in
  setup)
    root=$(cd "$(dirname "$0")/.." && pwd)
    run gcloud compute tpus tpu-vm scp --recurse "$root" "$tpu:$remote_dir" --zone "$zone" --worker=all
    ssh_all "cd $(quote "$remote_dir") && python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
    ;;
  run)
    config=${4:?CONFIG missing; $usage}
    workdir=${5:?WORKDIR missing; $usage}
    shift 5
    # The remote shell splits --command again: quote every word so each flag arrives as one argument.
    ssh_all "cd $(quote "$remote_dir") && $(quote .venv/bin/python -m ctxfuse_jax.main --distributed \
      "--config=$config" "--workdir=$workdir" "$@")"
    ;;
  *)
    echo "unknown action '$action'; use setup or run" >&2
    echo "$usage" >&2
    exit 2
    ;;
esac
