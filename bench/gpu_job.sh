#!/usr/bin/env bash
# The whole worker job (pretrain, stylize, export, renders) on the GPU machine, standard preset,
# on lego at 400x400 with one style, then the render server's frame time. Needs .benchdata/job_lego
# and the PyMCubes / xatlas wheels for the machine's Python in .gpuwhl.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpuwhl/*.whl && export PYTHONPATH=/tmp/site
start=$(date +%s)
timeout 400 python3 -m ins_core.worker .benchdata/job_lego < /dev/null > "$OUT/job_events.jsonl"
echo "{\"figure\": \"gpu_job_wall_s\", \"seconds\": $(( $(date +%s) - start )), \"exit\": $?}" | tee "$OUT/summary.jsonl"
grep -E '"stage"|"result"|"error"|"log"' "$OUT/job_events.jsonl" | head -20
cp .benchdata/job_lego/result/result.json .benchdata/job_lego/log.txt "$OUT/" 2>/dev/null
cp .benchdata/job_lego/result/texture.png "$OUT/" 2>/dev/null
cp "$(ls .benchdata/job_lego/result/renders/*_compare.png | head -1)" "$OUT/render_compare.png" 2>/dev/null
timeout 120 python3 bench/render_server_speed.py .benchdata/job_lego --width 800 --height 800 --frames 5 | tee -a "$OUT/summary.jsonl"
