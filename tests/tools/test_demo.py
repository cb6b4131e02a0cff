"""The README's run command in a tiny setting: the whole DFSS pipeline end to end
(about a dozen tool runs: marked slow, CI runs it with the other slow tests)."""
import csv
import json
import os
import os.path as osp
from collections import Counter

import pytest
from PIL import Image


def _valid_png(path):
    assert osp.isfile(path), path
    with Image.open(path) as im:
        assert im.format == 'PNG' and min(im.size) > 100
        im.load()


def _cells(table, first):
    """The cells after the first of the one table row that starts with ``first``."""
    (line, ) = [x for x in table.splitlines() if x.startswith(f'| {first} |')]
    return [c.strip() for c in line.strip().strip('|').split('|')][1:]


def _mtimes(root):
    return {osp.join(d, f): os.stat(osp.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(root) for f in files}


def _miou(path):
    """The mIoU (%) a model's test run wrote, as the table prints it."""
    with open(path) as f:
        return f"{json.load(f)['mIoU']:.1f}"


@pytest.mark.slow
def test_tiny_demo_runs_end_to_end_and_is_reused(tmp_path, tool):
    work = str(tmp_path / 'demo')
    proc = tool('tools/demo.py', '--tiny', '--work-dir', work)
    with open(osp.join(work, 'results.md')) as f:
        table = f.read()
    # each model's row holds that model's test mIoU
    assert _cells(table, 'Teacher DeepLabV3-R18-tiny') == [
        'rooms + labels', _miou(osp.join(work, 'teacher', 'test_metrics.json'))]
    assert _cells(table, 'Student DeepLabV3-MBv2-tiny') == [
        'rooms + labels (upper reference)',
        _miou(osp.join(work, 'student_labels', 'test_metrics.json'))]
    # the DFSS student is tools/compress.py's shipped one, tested by plain MMSeg
    assert _cells(table, 'Student DFSS (ADS + WDPD)') == [
        'pool only, no labels', _miou(osp.join(work, 'compress_test', 'test_metrics.json'))]
    with open(osp.join(work, 'compress', 'report.json')) as f:
        report = json.load(f)
    assert len(report['select']['kept']) == 24 and report['judge']['num_images'] == 16
    assert f"agreement with the teacher **{report['judge']['miou']:.1f}** mIoU" in table
    # each sampler's row: the sub-domains of the eps = 24 images its CSV marks kept
    with open(osp.join(work, 'data', 'pool', 'pool.csv'), newline='') as f:
        tags = {r['filename']: r['subdomain'] for r in csv.DictReader(f)}
    mixes = {}
    kept_by = {'ads (compress)': report['select']['kept']}
    for strategy in ('ads', 'random', 'confidence'):
        with open(osp.join(work, 'ads', f'scores_{strategy}.csv'), newline='') as f:
            kept_by[strategy] = [r['img_path'] for r in csv.DictReader(f) if r['selected'] == '1']
    for strategy, kept in kept_by.items():
        found = Counter(tags[name] for path in kept for name in tags
                        if path.endswith(osp.sep + name))
        assert sum(found.values()) == len(kept) == 24
        mixes[strategy] = [str(found.get(k, 0)) for k in
                           ('near_rooms', 'streets', 'objects', 'textures')]
        assert _cells(table, strategy) == mixes[strategy]
    assert mixes['ads'] != mixes['random']
    assert table in proc.stdout  # printed, not only written
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

    compress_files = _mtimes(osp.join(work, 'compress'))
    again = tool('tools/demo.py', '--tiny', '--work-dir', work)
    assert 'teacher: reusing' in again.stdout
    assert _mtimes(osp.join(work, 'compress')) == compress_files  # compress reused every stage
    assert '$ python tools/train.py' not in again.stdout
    assert '$ python tools/compare_pools.py' not in again.stdout


def test_a_step_log_is_appended_to_and_a_planted_link_is_refused(tmp_path, repo_root):
    """tools/demo.py's step logs: a rerun appends to its own log; a link planted under a
    log's name is refused, its target left as it was."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('demo_tool', osp.join(repo_root, 'tools',
                                                                        'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    log = tmp_path / 'step.log'
    for k in range(2):
        demo.run(['-c', f'print("run {k}")'], str(log))
    assert [line for line in log.read_text().splitlines() if line.startswith('run')] == [
        'run 0', 'run 1']
    target = tmp_path / 'precious.txt'
    target.write_text('keep')
    (tmp_path / 'planted.log').symlink_to(target)
    with pytest.raises(OSError, match='symbolic link'):
        demo.run(['-c', 'print("x")'], str(tmp_path / 'planted.log'))
    assert target.read_text() == 'keep'
