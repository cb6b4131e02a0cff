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
