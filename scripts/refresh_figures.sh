#!/usr/bin/env bash
# Regenerates the demo's figures and tables shown in README.md and docs/ after a change:
#   bash scripts/refresh_figures.sh [WORK_DIR]        (default work_dirs/demo)
# 1. python tools/demo.py --work-dir WORK_DIR (reuses the steps already done);
# 2. OMP_NUM_THREADS=1 python benchmarks/agreement_vs_accuracy.py --demo-dir WORK_DIR
#    (into work_dirs/refresh_figures/agreement_vs_accuracy);
# 3. docs/label_free.md's compare_predictions.py command, into work_dirs/refresh_figures/;
# 4. copies the figures into docs/figures/ and writes docs/figures/demo_results.md: the
#    demo's results.md, the agreement table, and the machine that made them (CPU, cores,
#    torch, OpenMMLab line, load). Paste its tables where README.md and docs/demo.md show
#    them; CPU runs differ between machines, so say which machine and the range seen.
# Runs in the active environment (after `bash scripts/setup_env.sh` and activation).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
W=${1:-work_dirs/demo}
FIG=docs/figures
OUT=work_dirs/refresh_figures
mkdir -p "$OUT"
python tools/demo.py --work-dir "$W" | tee "$OUT/demo.log"
OMP_NUM_THREADS=1 python benchmarks/agreement_vs_accuracy.py --demo-dir "$W" \
    --work-dir "$OUT/agreement_vs_accuracy" | tee "$OUT/agreement.log"
python tools/compare_predictions.py "$W/compress/dfss_config.py" \
    "$W/compress/student/student.pth" \
    --teacher-checkpoint "$W/teacher/iter_1500.pth" \
    --images "$OUT/agreement_vs_accuracy/agreement_data/scenes/img_dir/test" \
    --cache-dir "$OUT/agreement_vs_accuracy/teacher_labels" --out "$OUT/compare_predictions" --num 4 2>&1 | tee "$OUT/compare.log"
cp "$W/figures/synthetic_samples.png" "$W/figures/distribution_tsne.png" "$FIG/"
cp "$W/ads/d_hist.png" "$W/ads/gallery.png" "$W/ads/subdomain_mix.png" "$FIG/"
for f in distance_hist entropy_hist merge_mix; do cp "$W/compare/$f.png" "$FIG/compare_$f.png"; done
cp "$OUT/compare_predictions/compare_00.png" "$FIG/label_free_compare.png"
cp "$OUT/compare_predictions/per_class_agreement.png" "$FIG/label_free_per_class.png"
{
  echo "# Demo figures: the run that made docs/figures/*.png"
  echo
  echo "Made by \`bash scripts/refresh_figures.sh $W\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //' || uname -m),"\
       "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?');"\
       "$(python -c 'import torch, mmseg, mmengine, mmseg_dfss; print(f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmseg {mmseg.__version__}, {mmseg_dfss.STACK} line")')."
  echo
  cat "$W/results.md"
  echo
  echo "## Agreement vs accuracy (\`OMP_NUM_THREADS=1 python benchmarks/agreement_vs_accuracy.py --demo-dir $W\`)"
  echo
  sed -n '/^| model /,$p' "$OUT/agreement.log"
  echo
  echo "## compare_predictions.py (docs/label_free.md's command)"
  echo
  grep -i "agreement" "$OUT/compare.log" | tail -1 || true
} > "$FIG/demo_results.md"
echo "refreshed $FIG (see $FIG/demo_results.md)"
