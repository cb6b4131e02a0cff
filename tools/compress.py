"""From a teacher and a folder of unlabeled images to a judged, exported student:

    python tools/compress.py TEACHER --pool POOL [--pool NAME=POOL ...] --work-dir DIR
        [--teacher-checkpoint CKPT] [--student PRESET|CONFIG] [--eps N] [--val-images N]
        [--iters N] [--batch-size N] [--crop H W] [--val-dataset CONFIG]
        [--gpus N | --launcher slurm [--gpus N] [--partition P]]
        [--cfg-options k=v ...] [--dry-run]

TEACHER: a model name of the installed MMSeg's metafiles, an mmseg:: config or a
config path. Writes DIR/dfss_config.py first (--dry-run stops there), then the stages
select (ADS), train (DFSS), judge (agreement with the teacher, not accuracy), ship
(student.pth, student_config.py, student.onnx, compression table) and DIR/report.html
with DIR/report.json. --gpus N (N > 1) runs the pool scoring and train under torchrun,
--launcher slurm under srun; the other stages stay in this process. Running it again
reuses every finished stage; see docs/compress.md.
"""
import mmseg_dfss  # noqa: F401  (registers the plugin; checkpoints load under torch>=2.6)
from mmseg_dfss.apis.compress import main

if __name__ == '__main__':
    main()
