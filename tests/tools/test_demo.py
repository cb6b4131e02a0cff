"""The README's run command in a tiny setting: the whole DFSS pipeline end to end
(about a dozen tool runs: marked slow, CI runs it with the other slow tests)."""
import os.path as osp

import pytest
from PIL import Image


def _valid_png(path):
    assert osp.isfile(path), path
    with Image.open(path) as im:
        assert im.format == 'PNG' and min(im.size) > 100
        im.load()


@pytest.mark.slow
def test_tiny_demo_runs_end_to_end_and_is_reused(tmp_path, tool):
    work = str(tmp_path / 'demo')
    proc = tool('tools/demo.py', '--tiny', '--work-dir', work)
    with open(osp.join(work, 'results.md')) as f:
        table = f.read()
    for row in ('| Teacher DeepLabV3-R18-tiny |', '| Student DeepLabV3-MBv2-tiny |',
                '| Student DFSS (ADS + WDPD) |', '| ads |', '| random |', '| confidence |'):
        assert row in table
    assert table in proc.stdout  # printed, not only written
    # the DFSS student was evaluated through its plain-MMSeg export
    assert osp.isfile(osp.join(work, 'dfss', 'ads_wdpd_seed0', 'student', 'student.pth'))
    for fig in ('figures/synthetic_samples.png', 'figures/distribution_tsne.png',
                'ads/d_hist.png', 'ads/gallery.png', 'ads/subdomain_mix.png'):
        _valid_png(osp.join(work, fig))

    again = tool('tools/demo.py', '--tiny', '--work-dir', work)
    assert 'teacher: reusing' in again.stdout and 'dfss/ads_wdpd_seed0: reusing' in again.stdout
    assert '$ python tools/train.py' not in again.stdout
