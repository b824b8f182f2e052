#!/usr/bin/env bash
# pre-commit hook: export the notebooks into encoder_book/ and fail if that changed a file
# (the package must be what the notebooks export; add encoder_book/ and commit again).
set -euo pipefail
nbdev_export
if ! git diff --quiet --exit-code -- encoder_book/; then
  git diff --stat -- encoder_book/
  echo "nbdev_export changed encoder_book/: git add encoder_book/ and commit again"
  exit 1
fi
