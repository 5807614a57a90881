#!/usr/bin/env bash
# The extension in the real Blender application (Debian trixie's Blender 4.3, Python 3.13, no
# numpy) through ../shared/tools/real-blender (root; `real-blender setup` once): `make real-blender`.
#
#   1. build the light zip of an older commit (UPGRADE_FROM, default a7bb930: before register()
#      forgot a replaced ins_core) and install it, then this tree's light zip over it, as an artist
#      upgrading does (`blender --command extension install-file -e`); Worker Python = .venv;
#      Check Worker advises a Worker Python for Blender's own Python and accepts .venv's
#   2. the demo scene (ins_blender/demo_scene.py) saved by that Blender
#   3. `--command ins_stylize`: bad input exits 2; SIGTERM exits 143 and Ctrl-C typed in a terminal
#      exits 130, each with the worker checkpointed and gone; --resume finishes the job (exit 0, result imported, .blend saved); --resume again only imports
#   4. `blender -b out.blend -E INS -f 1` writes a picture; as a multilayer EXR it holds the
#      engine's Depth, Mist and Normal passes, and the world's colour behind the field with Film > Transparent off
#   5. in a window: Rendered shading with the INS engine, screenshots of the viewport preview and
#      of the sidebar's INS tab at the default width (the scene's render region set from 120 s), then
#      of the front orthographic view with a render region of its own; each region drawn at its size;
#      the imported mesh (the field's Placement) moved from 235 s: the preview's field moves with it;
#      hidden in the viewport from 285 s: the preview shows the world alone (check_hidden.py); shown
#      again from 305 s with a copy of it (Shift+D) beside it: the preview shows both fields
#
# Everything lands in OUT (default /tmp/ins_real_blender); STEPS (default 200,30) keeps training short.
set -euo pipefail
cd "$(dirname "$0")/../.."
RB="${REAL_BLENDER:-$(cd .. && pwd)/shared/tools/real-blender}"
ROOT_FS="${ROOT:-/var/tmp/real-blender}"
OUT="${OUT:-/tmp/ins_real_blender}"
STYLE="${STYLE:-$(cd .. && pwd)/shared/data/styles/starry_night.jpg}"
STEPS="${STEPS:-200,30}"
UPGRADE_FROM="${UPGRADE_FROM:-a7bb930}"
[ -x "$ROOT_FS/usr/bin/blender" ] || { echo "No real Blender in $ROOT_FS: run \`$RB setup\` (as root) first."; exit 2; }
rm -rf "$OUT" && mkdir -p "$OUT"
STYLIZE=(blender -b "$OUT/scene.blend" --command ins_stylize --style "$STYLE" --source auto_rig --views 12 --steps "$STEPS")

expect() {  # expect STATUS LOGNAME COMMAND...: run it, keep its output, fail unless it exits STATUS
  local want=$1 name=$2 log="$OUT/$2.log" got=0
  shift 2
  "$@" > "$log" 2>&1 || got=$?
  if [ "$got" != "$want" ]; then echo "FAIL: exit $got (expected $want): $*"; tail -n 8 "$log"; exit 1; fi
  echo "ok: exit $got  $name"
}

echo "== install: $UPGRADE_FROM's build, then this one over it"
mkdir -p "$OUT/old_src"
git archive "$UPGRADE_FROM" | tar -x -C "$OUT/old_src"
cp -r ins_core/assets "$OUT/old_src/ins_core/"  # built by set-up, not tracked
(py="$PWD/.venv/bin/python"; cd "$OUT/old_src" && "$py" build_addon.py --light --offline --out "$OUT/old_dist") > "$OUT/build_old.log"
.venv/bin/python build_addon.py --light --offline --out "$OUT/dist" > "$OUT/build.log"
ZIP=$(ls "$OUT"/dist/*-light.zip)
expect 0 install_old "$RB" run blender -b --command extension install-file -r user_default -e "$(ls "$OUT"/old_dist/*-light.zip)"
# The old add-on is enabled when this Blender starts, so its ins_core is imported before the new
# files land: register() must load the new ones (exit 1, "cannot import name", without it).
expect 0 install "$RB" run blender -b --command extension install-file -r user_default -e "$ZIP"
! grep -q "Exception in module register" "$OUT/install.log" || { echo "FAIL: the upgrade's register() raised"; grep -A3 Exception "$OUT/install.log"; exit 1; }
expect 0 worker_python "$RB" run blender -b --python tests/real_blender/set_worker_python.py -- "$PWD/.venv/bin/python"
expect 0 scene "$RB" run blender -b --python tests/real_blender/make_scene.py -- "$OUT/scene.blend"
expect 0 check_worker "$RB" run blender -b --python-exit-code 1 --python tests/real_blender/check_worker.py
grep "Check Worker" "$OUT/check_worker.log"

echo "== the command"
expect 2 bad_style "$RB" run blender -b "$OUT/scene.blend" --command ins_stylize --style /no/such.jpg --out "$OUT/bad"
expect 2 bad_args "$RB" run blender -b "$OUT/scene.blend" --command ins_stylize --bogus
# SIGTERM while the worker trains: the worker checkpoints and stops, the command exits 143.
"$RB" run "${STYLIZE[@]}" --out "$OUT/job" > "$OUT/sigterm.log" 2>&1 &
wrapper=$!
for _ in $(seq 600); do grep -q "INS:   [0-9]*/[0-9]*, loss" "$OUT/sigterm.log" 2>/dev/null && break; sleep 0.5; done
blender_pid=$(pgrep -n -f -- "--out $OUT/job") || { echo "FAIL: the command never started training"; exit 1; }
kill -TERM "$blender_pid"
got=0; wait "$wrapper" || got=$?
[ "$got" = 143 ] || { echo "FAIL: SIGTERM gave exit $got (expected 143)"; tail -n 8 "$OUT/sigterm.log"; exit 1; }
! pgrep -f -- "ins_core.worker.* $OUT/job" > /dev/null || { echo "FAIL: the worker outlived the command"; exit 1; }
ls "$OUT"/job/checkpoints/*/checkpoints/last.pt > /dev/null
echo "ok: exit 143  sigterm (worker checkpointed and gone)"
# Ctrl-C typed in a terminal (ctrl_c.py: a pseudo-terminal whose driver sends SIGINT to the
# foreground process group, not to the worker's): exit 130, the worker checkpointed and gone.
expect 130 ctrl_c .venv/bin/python tests/real_blender/ctrl_c.py "INS:   [0-9]*/[0-9]*, loss" -- "$RB" run "${STYLIZE[@]}" --out "$OUT/job_int"
! pgrep -f -- "ins_core.worker.* $OUT/job_int" > /dev/null || { echo "FAIL: the worker outlived Ctrl-C"; exit 1; }
ls "$OUT"/job_int/checkpoints/*/checkpoints/last.pt > /dev/null
expect 0 resume "$RB" run "${STYLIZE[@]}" --out "$OUT/job" --resume --save "$OUT/out.blend"
expect 0 resume_finished "$RB" run "${STYLIZE[@]}" --out "$OUT/job" --resume
grep -q "without running it again" "$OUT/resume_finished.log"

echo "== F12 with the INS engine"
expect 0 f12 "$RB" run blender -b "$OUT/out.blend" -E INS -o "$OUT/f12_####" -F PNG -f 1
test -s "$OUT/f12_0001.png"
echo "ok: $OUT/f12_0001.png"
# The same frame as a multilayer EXR with the Z pass on and Film > Transparent off.
expect 0 f12_passes "$RB" run blender -b "$OUT/out.blend" -E INS --python tests/real_blender/passes.py -o "$OUT/passes_####" -f 1
.venv/bin/python tests/real_blender/check_passes.py "$OUT/passes_0001.exr"

echo "== the window"
INS_BLEND="$OUT/out.blend" INS_SECONDS=360 INS_CAMERA_BORDER_AT=120 INS_ORTHO_AT=185 INS_MOVE_AT=235 INS_HIDE_AT=285 INS_COPY_AT=305 "$RB" gui tests/real_blender/gui_preview.py "$OUT/gui.log" &
gui=$!
sleep 60
"$RB" shot "$OUT/viewport_60s.png"
# Blender 4.3 cannot choose the sidebar tab from Python: click the INS tab (factory layout at 1600x1000).
chroot "$ROOT_FS" /bin/sh -c "DISPLAY=:${DISPLAY_NUM:-99} xdotool mousemove 1307 242 click 1"
sleep 120
"$RB" shot "$OUT/viewport_180s.png"
sleep 100  # the front orthographic view from 185 s, the mesh (and the field) moved at 235 s
"$RB" shot "$OUT/viewport_ortho_moved_280s.png"
sleep 22  # the mesh hidden in the viewport (its eye icon) at 285 s: the world alone where the field was
"$RB" shot "$OUT/viewport_hidden_302s.png"
sleep 43  # shown again at 305 s with a copy of the mesh (Shift+D) beside it: both fields drawn
"$RB" shot "$OUT/viewport_copy_345s.png"
wait "$gui" || true
grep -m 2 "GUI:.*orthographic" "$OUT/gui.log" || true
grep "GUI:" "$OUT/gui.log" | tail -n 4
grep -q "GUI:.*field followed: yes" "$OUT/gui.log" || { echo "FAIL: the preview's field did not follow its moved object (see $OUT/gui.log)"; exit 1; }
grep -q "GUI:.*region drawn: yes" "$OUT/gui.log" || { echo "FAIL: a render region was not drawn at its size (see $OUT/gui.log)"; exit 1; }
grep -q "GUI:.*a second style listed: The Render Job was stylized with 1 style" "$OUT/gui.log" || { echo "FAIL: no Style Weights note for a second style (see $OUT/gui.log)"; exit 1; }
.venv/bin/python tests/real_blender/check_hidden.py "$OUT/viewport_ortho_moved_280s.png" "$OUT/viewport_hidden_302s.png" "$OUT/gui.log" "$OUT/viewport_copy_345s.png"
echo "done: screenshots and logs in $OUT"
