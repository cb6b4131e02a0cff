"""The README's run command in a tiny setting: the whole DFSS pipeline end to end
(about a dozen tool runs: marked slow, CI runs it with the other slow tests)."""
import json
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

    # the pool's sub-domains compared as separate pools (tools/compare_pools.py)
    with open(osp.join(work, 'compare', 'summary.json')) as f:
        comparison = json.load(f)
    assert sorted(comparison['pools']) == ['near_rooms', 'objects', 'streets', 'textures']
    assert sum(p['selected_in_merge'] for p in comparison['pools'].values()) == 24
    assert sum(p['num_images'] for p in comparison['pools'].values()) == 64
    assert '| rank | pool | images | entropy mean |' in table
    for fig in ('distance_hist.png', 'entropy_hist.png', 'merge_mix.png'):
        _valid_png(osp.join(work, 'compare', fig))

    again = tool('tools/demo.py', '--tiny', '--work-dir', work)
    assert 'teacher: reusing' in again.stdout and 'dfss/ads_wdpd_seed0: reusing' in again.stdout
    assert '$ python tools/train.py' not in again.stdout
    assert '$ python tools/compare_pools.py' not in again.stdout
