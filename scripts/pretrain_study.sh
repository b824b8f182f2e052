#!/usr/bin/env bash
# Issue 19's experiment in the background: pretraining (<= 55 min, calibrated) then SST-2
# fine-tuning with --init and from scratch, seeds 0-2. Extra arguments go to the script.
# Results: chapters/runs/pretrain_study/results.json; log: chapters/runs/pretrain_study.log
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p chapters/runs
nohup .venv/bin/python scripts/pretrain_study.py "$@" > chapters/runs/pretrain_study.log 2>&1 &
echo "started (pid $!): tail -f chapters/runs/pretrain_study.log"
