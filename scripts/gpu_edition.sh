#!/usr/bin/env bash
# The paper edition in one device call (see README, "The paper edition on a GPU").
#   on the device:  bash scripts/gpu_edition.sh [options of python -m salve_utils.pipeline.gpu_edition]
# Installs the carried wheels (.whl/: papermill and the Jupyter kernel stack the device image lacks),
# then runs salve_utils.pipeline.gpu_edition: unpack the device pack (.stage/), run the profile's editions
# under a time guard, write at most 8 files into $OUT. Defaults: --profile paper --budget 480.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed" >&2; exit 3; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
exec "$PY" -m salve_utils.pipeline.gpu_edition "$@"
