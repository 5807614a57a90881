#!/usr/bin/env bash
# Every GPU figure in one run (the lent GPU machine gives a few minutes): reconstruction time-to-PSNR
# on lego at 400x400, stylization with and without geometry consistency, an SDF fit, and the
# hash-grid step rate eager vs compiled. Data: .benchdata/lego400 (lego resized to 400x400) and
# .benchdata/starry_night.jpg, prepared from ../shared/data. Writes to $OUT (or ./gpu_out).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT/pictures"
export PYTHONUNBUFFERED=1
log="$OUT/bench.jsonl"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
timeout 200 python3 bench/fit_lego.py --data .benchdata/lego400 --resolution 400 --time-budget 60 --evaluations 6 --device cuda --out /tmp/lego400 2>&1 | tee -a "$log"
timeout 240 python3 bench/stylize_lego.py --content-run /tmp/lego400 --style .benchdata/starry_night.jpg --device cuda --compare-geometry --time-budget 60 --pictures "$OUT/pictures" 2>&1 | tee -a "$log"
timeout 90 python3 -m ins_core fit --field sdf --data .benchdata/lego400 --resolution 200 --steps 1500 --time-budget 45 --device cuda --out /tmp/lego_sdf 2>&1 | tail -2 | tee -a "$log"
timeout 60 python3 -m ins_core eval --run /tmp/lego_sdf --device cuda 2>&1 | tail -1 | tee -a "$log"
timeout 120 python3 bench/hashgrid_speed.py --device cuda 2>&1 | tee -a "$log"
