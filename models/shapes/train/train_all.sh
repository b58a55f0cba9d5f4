#!/bin/bash
# Retrains every Shapes model from scratch with the same seeds, in dependency order, into $HEED_SHAPES_WORKDIR
# (default /root/heed-shapes), then exports them into models/shapes/. Step counts are those of the committed models
# (see models/shapes/README.md); pass DEADLINE_* (UTC HH:MM) only to cut a run short on a busy machine.
set -euo pipefail
cd "$(dirname "$0")"
export OMP_NUM_THREADS=1
PY=/usr/bin/python3
$PY train.py --model vae --steps "${VAE_STEPS:-450}"
$PY train.py --model sd --steps "${SD_STEPS:-6000}" ${DEADLINE_SD:+--deadline $DEADLINE_SD}
$PY train.py --model vit --steps "${VIT_STEPS:-4000}" ${DEADLINE_VIT:+--deadline $DEADLINE_VIT}
$PY train.py --model clip --steps "${CLIP_STEPS:-6000}" ${DEADLINE_CLIP:+--deadline $DEADLINE_CLIP}
if [ -z "${NO_EXPORT:-}" ]; then $PY export.py; fi
