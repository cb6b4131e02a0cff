"""The command's last lines: the headline numbers a user reads first, agreement named as
such and the labelled set's accuracy only when --val-dataset gave one."""
from mmseg_dfss.apis.compress.run import headline


def _results(**judge):
    return dict(judge=dict(miou=41.234, num_images=30, **judge),
                ship=dict(max_abs_diff=3.3e-06,
                          compression=dict(ratio=dict(params=3.41, pytorch_s=0.934,
                                                      onnxruntime_s=1.126))))


def test_last_lines_name_agreement_and_only_a_given_accuracy():
    (line, ) = headline(_results())
    assert line == ('agreement with the teacher (not accuracy): mIoU 41.23 on 30 held-out '
                    'images; ONNX max abs diff 3.3e-06; student 3.4x fewer parameters; '
                    'latency teacher/student here 0.93 (PyTorch), 1.13 (onnxruntime)')
    val = dict(config='/data/val.py', miou=12.5, num_images=6)
    assert headline(_results(val_dataset=val)) == [
        line, 'accuracy on /data/val.py: mIoU 12.50 on 6 labelled images']


def test_the_pool_stage_key_changes_with_its_inputs_only(tmp_path, synthetic_root,
                                                         teacher_ckpt):
    """The pool comparison is redone for another eps or another set of pools, and reused
    when only training arguments change."""
    import cv2
    import numpy as np
    from mmengine.registry import init_default_scope

    from mmseg_dfss.apis.compress.plan import make_plan
    from mmseg_dfss.apis.compress.pool_stage import pool_key_parts
    from mmseg_dfss.apis.compress.run import _all_pools_config
    from mmseg_dfss.apis.compress.stage_stamp import digest
    init_default_scope('mmseg')
    flat = tmp_path / 'flat'
    flat.mkdir()
    for i in range(4):
        cv2.imwrite(str(flat / f'{i}.png'), np.full((64, 64, 3), 40 * i, np.uint8))
    argv = ['configs/synthetic/deeplabv3_r18-tiny_synthetic.py', '--pool',
            f'{synthetic_root}/pool', '--work-dir', str(tmp_path / 'w'), '--teacher-checkpoint',
            teacher_ckpt, '--student', 'configs/synthetic/deeplabv3_mbv2-tiny_synthetic.py',
            '--eps', '16', '--val-images', '4', '--iters', '2', '--batch-size', '2']

    def key(*extra):
        return digest('pool', pool_key_parts(_all_pools_config(make_plan(argv + list(extra)))))

    base = key()
    assert key('--lr', '0.05') == key('--iters', '3') == key('--batch-size', '4') == base
    assert key('--eps', '12') != base
    assert key('--pool', f'flat={flat}') != base
