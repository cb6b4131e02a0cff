"""tools/compare_pools.py: per-pool entropy and ADS statistics, the merged selection,
verdicts, outputs, the score cache, and bad pool specs."""
import csv
import importlib.util
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image
from pool_families import (normalised, numpy_entropy, scene_teacher_checkpoint, write_family,
                           write_grey)

from mmseg_dfss.core.bn_stats import SCORE_RTOL
from mmseg_dfss.core.pool_compare import PoolSpecError, build_pool, parse_pool_args

TEACHER = 'configs/synthetic/deeplabv3_r18-tiny_synthetic.py'
EPS = 6
SCORE_PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def compare_tool(repo_root):
    spec = importlib.util.spec_from_file_location(
        'compare_pools', osp.join(repo_root, 'tools/compare_pools.py'))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def make_coco_of(root, family, n, seed):
    """COCO layout (annotations/instances_mini.json + mini/*.png) of one family."""
    paths = write_family(osp.join(root, 'mini'), family, n, seed)
    images = [dict(id=k + 1, file_name=osp.basename(p), height=48, width=48)
              for k, p in enumerate(paths)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann = osp.join(root, 'annotations', 'instances_mini.json')
    with open(ann, 'w') as f:
        json.dump(dict(images=images, annotations=[], categories=[]), f)
    return ann, paths


@pytest.fixture(scope='module')
def layout(tmp_path_factory, repo_root):
    """A scene-calibrated teacher, the original domain (scenes), and three pools:
    near (scenes, a config key), poster (posterized scenes, COCO layout) and far
    (noise and one corrupt file, a folder)."""
    root = str(tmp_path_factory.mktemp('compare'))
    teacher_cfg = osp.join(repo_root, TEACHER)
    ckpt = scene_teacher_checkpoint(teacher_cfg, root)
    files = dict(
        original=write_family(osp.join(root, 'original'), 'scene', 6, seed=1),
        near=write_family(osp.join(root, 'near'), 'scene', 8, seed=2),
        far=write_family(osp.join(root, 'far'), 'noise', 8, seed=3))
    ann, files['poster'] = make_coco_of(osp.join(root, 'coco'), 'posterized', 7, seed=4)
    with open(osp.join(root, 'far', 'zz_broken.png'), 'wb') as f:  # counted, never kept
        f.write(b'not a png')
    cfg = osp.join(root, 'dfss_like.py')
    with open(cfg, 'w') as f:
        f.write(f"""default_scope = 'mmseg'
num_samples = 999  # the ADSDataset's num_samples wins
train_dataloader = dict(batch_size=2, dataset=dict(
    type='ADSDataset',
    dataset=dict(type='UnlabeledImageDataset', data_prefix=dict(img_path={root + '/near'!r}),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]),
    teacher={teacher_cfg!r}, teacher_checkpoint={ckpt!r}, num_samples={EPS},
    bn_layers='backbone', score_pipeline={SCORE_PIPELINE!r}, score_batch_size=3,
    cache_dir={root + '/cache'!r}, max_unreadable=0.5))
val_dataloader = dict(batch_size=1, dataset=dict(
    type='UnlabeledImageDataset', data_prefix=dict(img_path={root + '/original'!r}),
    pipeline=[]))
""")
    return dict(root=root, cfg=cfg, ckpt=ckpt, teacher_cfg=teacher_cfg, ann=ann, files=files,
                cache=osp.join(root, 'cache'))


@pytest.fixture(scope='module')
def run(layout, compare_tool):
    """One run of the tool on the three pools, outputs under out/."""
    out = osp.join(layout['root'], 'out')
    assert compare_tool.main([
        layout['cfg'], '--pools', 'near=train_dataloader.dataset.dataset',
        f'poster={layout["ann"]}', f'far={layout["root"]}/far', '--out', out,
        '--no-progress']) == 0
    with open(osp.join(out, 'summary.json')) as f:
        summary = json.load(f)
    return dict(out=out, summary=summary)


def independent_distances(layout, paths):
    """d of Eq. 9 for each image scored alone, in numpy (tests/model_utils.py)."""
    from model_utils import eq9_distance

    from mmseg_dfss.core import build_frozen_segmentor
    model = build_frozen_segmentor(layout['teacher_cfg'], layout['ckpt'])
    return np.array([eq9_distance(model, normalised([p]))[0] for p in paths])


def test_numbers_match_independent_computations(layout, run):
    s = run['summary']
    assert s['eps'] == EPS
    distances = {}
    for name in ('near', 'poster', 'far'):
        paths = sorted(layout['files'][name])
        p = s['pools'][name]
        broken = int(name == 'far')
        assert p['num_images'] == len(paths) + broken and p['unreadable'] == broken
        h = np.array([numpy_entropy(x) for x in paths])
        assert p['entropy']['mean'] == pytest.approx(h.mean(), abs=1e-9)
        assert p['entropy']['median'] == pytest.approx(np.median(h), abs=1e-9)
        assert p['entropy']['variance'] == pytest.approx(h.var(), abs=1e-9)
        d = independent_distances(layout, paths)
        distances[name] = d
        p5, p25, p50 = np.percentile(d, [5, 25, 50])
        # the tool batches the images, the reference takes them alone, in float64
        assert p['distance']['p5'] == pytest.approx(p5, rel=SCORE_RTOL)
        assert p['distance']['p25'] == pytest.approx(p25, rel=SCORE_RTOL)
        assert p['distance']['median'] == pytest.approx(p50, rel=SCORE_RTOL)
        assert p['eps_cut_alone'] == pytest.approx(np.sort(d)[EPS - 1], rel=SCORE_RTOL)
    h0 = np.array([numpy_entropy(x) for x in layout['files']['original']])
    assert s['original']['name'] == 'val_dataloader.dataset'
    assert s['original']['entropy']['mean'] == pytest.approx(h0.mean(), abs=1e-9)

    # the merge: the eps lowest d over the three pools, counted per pool
    names = ['near', 'poster', 'far']
    merged = np.concatenate([distances[n] for n in names])
    source = np.repeat(np.arange(3), [distances[n].size for n in names])
    keep = np.argsort(merged, kind='stable')[:EPS]
    # the cut is decided: the tool's scores (within SCORE_RTOL) keep the same images
    cut, nxt = np.sort(merged)[EPS - 1:EPS + 1]
    assert nxt - cut > 2 * SCORE_RTOL * abs(nxt)
    for k, name in enumerate(names):
        kept = merged[keep][source[keep] == k]
        assert s['pools'][name]['selected_in_merge'] == kept.size
        if kept.size:
            assert s['merged']['sources'][name]['median_distance'] == pytest.approx(
                np.median(kept), rel=SCORE_RTOL)
    assert sum(s['pools'][n]['selected_in_merge'] for n in names) == EPS
    assert s['merged']['cut'] == pytest.approx(merged[keep].max(), rel=SCORE_RTOL)


def test_out_of_domain_pool_ranks_last_and_verdicts_say_why(run):
    s = run['summary']
    pools = s['pools']
    assert s['ranking'][0] == 'near' and s['ranking'][-1] == 'far'
    assert pools['far']['rank'] == 3 and pools['far']['selected_in_merge'] == 0
    assert pools['near']['selected_in_merge'] > 0
    assert pools['far']['distance']['p5'] > pools['near']['distance']['median']
    assert pools['near']['verdict']['relevance'].startswith('relevance: best of the 3 pools')
    assert 'less relevant than near' in pools['far']['verdict']['relevance']
    # richness against the original domain (scenes): noise is richer, 4 grey levels poorer
    orig = s['original']['entropy']['mean']
    assert pools['far']['entropy']['mean'] > orig > pools['poster']['entropy']['mean']
    assert pools['far']['verdict']['richness'].startswith('richness: meets Eq. 6')
    assert pools['poster']['verdict']['richness'].startswith(
        'richness: below the original domain')


def test_outputs_report_csv_and_figures(run, layout):
    out, s = run['out'], run['summary']
    schema = {'num_images', 'entropy', 'distance', 'selected_in_merge'}
    assert all(schema <= set(p) for p in s['pools'].values())
    with open(osp.join(out, 'report.md')) as f:
        report = f.read()
    for name in ('near', 'poster', 'far'):
        p = s['pools'][name]
        row = (f'| {p["rank"]} | {name} | {p["num_images"]} | {p["unreadable"]} | '
               f'{p["entropy"]["mean"]:.3f} | ')
        assert row in report
        assert f'- **{name}**: {p["verdict"]["relevance"]}' in report
    with open(osp.join(out, 'scores.csv')) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(p['num_images'] for p in s['pools'].values())
    assert sum(int(r['selected_in_merge']) for r in rows) == EPS
    for fig in ('distance_hist.png', 'entropy_hist.png', 'merge_mix.png'):
        with Image.open(osp.join(out, fig)) as im:
            assert im.format == 'PNG' and min(im.size) > 100


def test_scores_are_cached_for_a_later_dfss_run(layout, run):
    """An ADSDataset over one of the compared pools finds its scores in the cache
    (same cache entry, no new one) and selects by the same distances."""
    from mmseg_dfss.datasets import ADSDataset
    before = sorted(d for d in os.listdir(layout['cache']) if d.startswith('ads-'))
    assert len(before) == 3  # one entry per pool
    ds = ADSDataset(dataset=dict(type='UnlabeledImageDataset',
                                 data_prefix=dict(img_path=layout['root'] + '/far'),
                                 pipeline=[]),
                    teacher=layout['teacher_cfg'], teacher_checkpoint=layout['ckpt'],
                    num_samples=EPS, score_pipeline=SCORE_PIPELINE,
                    cache_dir=layout['cache'], max_unreadable=0.5)
    assert sorted(d for d in os.listdir(layout['cache']) if d.startswith('ads-')) == before
    with open(osp.join(run['out'], 'scores.csv')) as f:
        far = [float(r['distance'] or 'nan') for r in csv.DictReader(f) if r['pool'] == 'far']
    assert np.isnan(far[-1])  # the corrupt file
    np.testing.assert_array_equal(ds.result.scores, far)


def test_eps_option_and_no_original_domain(layout, compare_tool, tmp_path):
    assert compare_tool.main([layout['cfg'], '--pools', f'near={layout["root"]}/near',
                              f'far={layout["root"]}/far', '--eps', '3', '--original', 'none',
                              '--out', str(tmp_path), '--no-progress']) == 0
    with open(tmp_path / 'summary.json') as f:
        s = json.load(f)
    assert s['eps'] == 3 and s['original'] is None
    assert s['pools']['near']['selected_in_merge'] == 3
    assert 'no original-domain dataset' in s['pools']['far']['verdict']['richness']


# ---------------------------------------------------------------- bad pool specs
@pytest.mark.parametrize('items,match', [
    (['coco'], r"--pools 'coco': expected NAME=SPEC"),
    (['=data/x'], r"the pool name '' must be non-empty"),
    (['a b=data/x'], r"the pool name 'a b' must be"),
    (['a='], r"pool 'a' has an empty SPEC"),
    (['a=x', 'a=y'], r"the pool name 'a' is given twice"),
])
def test_malformed_name_spec(items, match):
    with pytest.raises(PoolSpecError, match=match):
        parse_pool_args(items)


def test_missing_folder_empty_list_and_unknown_key(layout, tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(layout['cfg'])
    missing = str(tmp_path / 'no_such_folder')
    with pytest.raises(PoolSpecError, match=rf"pool 'a': '{missing}' does not exist"):
        build_pool('a', missing, cfg)
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n  \n')
    with pytest.raises(PoolSpecError, match=rf"pool 'b': list file '{empty}' is empty"):
        build_pool('b', str(empty), cfg)
    with pytest.raises(PoolSpecError,
                       match=r"pool 'c': 'train_dataloader.dataset.nope' is not an existing "
                       r"folder, list file or COCO .json nor a dataset key of .*dfss_like.py "
                       r"\(its dataloaders' datasets: \['train_dataloader.dataset', "
                       r"'train_dataloader.dataset.dataset', 'val_dataloader.dataset'\]\)"):
        build_pool('c', 'train_dataloader.dataset.nope', cfg)
    with pytest.raises(PoolSpecError, match=r"'train_dataloader.batch_size' of .* is not a "
                       r'dataset config'):
        build_pool('d', 'train_dataloader.batch_size', cfg)
    with pytest.raises(PoolSpecError, match=r"pool 'f': '.*flat.png' is one image"):
        build_pool('f', write_grey(str(tmp_path / 'flat.png'), np.zeros((4, 4), np.uint8)))
    with pytest.raises(PoolSpecError, match=r"pool 'g': '.*dfss_like.py' is a config file"):
        build_pool('g', layout['cfg'], cfg)
    lonely = tmp_path / 'lonely' / 'instances_x.json'
    lonely.parent.mkdir()
    lonely.write_text('{"images": []}')
    with pytest.raises(PoolSpecError, match=r"pool 'e': cannot find the images of the COCO "
                       r'annotation file .*NAME=ANN.json:IMAGE_DIR'):
        build_pool('e', str(lonely), cfg)


def test_list_file_paths_are_relative_to_the_list(tmp_path):
    write_grey(str(tmp_path / 'imgs' / 'a.png'), np.zeros((8, 8), np.uint8))
    write_grey(str(tmp_path / 'imgs' / 'b.png'), np.zeros((8, 8), np.uint8))
    lst = tmp_path / 'pool.txt'
    lst.write_text('imgs/b.png\n\nimgs/a.png\n')
    ds, kind = build_pool('l', str(lst))
    assert kind == 'list file'
    assert [ds.get_data_info(i)['img_path'] for i in range(len(ds))] == [
        str(tmp_path / 'imgs' / 'b.png'), str(tmp_path / 'imgs' / 'a.png')]
    # a COCO file with an explicit image folder
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(dict(images=[dict(id=1, file_name='a.png')])))
    ds, kind = build_pool('c', f'{ann}:{tmp_path / "imgs"}')
    assert kind == 'COCO annotations' and ds.get_data_info(0)['img_path'] == str(
        tmp_path / 'imgs' / 'a.png')


def test_cli_errors_are_one_line(layout, compare_tool, tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --pools 'nosep': expected NAME=SPEC"):
        compare_tool.main([layout['cfg'], '--pools', 'nosep'])
    with pytest.raises(SystemExit, match=r"^error: pool 'x': .*nowhere' does not exist"):
        compare_tool.main([layout['cfg'], '--pools', f'x={tmp_path}/nowhere'])
    with pytest.raises(SystemExit, match=r'^error: eps = 99 is larger than the 8 images'):
        compare_tool.main([layout['cfg'], '--pools', f'n={layout["root"]}/near', '--eps', '99',
                           '--no-progress'])


def test_combined_pools_config_and_its_sources_as_pools(tmp_path, repo_root):
    """The documented ConcatDataset config: the combined pool, or one source of it,
    is a config-key pool spec."""
    from dataset_layouts import make_coco
    from mmengine.config import Config
    coco = make_coco(str(tmp_path / 'coco'))
    frames = write_family(str(tmp_path / 'frames'), 'scene', 3, seed=0)
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/pools/deeplabv3_r50_to_mbv2_nyuv2_coco+frames.py'))
    cfg.merge_from_dict({'train_dataloader.dataset.dataset.datasets.0.data_root': coco,
                         'train_dataloader.dataset.dataset.datasets.1.data_root':
                         str(tmp_path / 'frames')})
    assert cfg.train_dataloader.dataset.source_names == ['coco', 'frames']
    both, _ = build_pool('both', 'train_dataloader.dataset.dataset', cfg)
    assert type(both).__name__ == 'ConcatDataset' and len(both) == 5 + 3
    assert both.get_data_info(5)['img_path'] == frames[0]
    only_coco, _ = build_pool('coco', 'train_dataloader.dataset.dataset.datasets.0', cfg)
    assert type(only_coco).__name__ == 'COCOPoolDataset' and len(only_coco) == 5


def test_original_domain_choices(layout, compare_tool, tmp_path, capsys):
    pools = ['--pools', f'near={layout["root"]}/near', '--eps', '3', '--no-progress']
    # explicit: any SPEC
    assert compare_tool.main([layout['cfg'], *pools, '--original', f'{layout["root"]}/far',
                              '--out', str(tmp_path / 'a')]) == 0
    with open(tmp_path / 'a' / 'summary.json') as f:
        s = json.load(f)
    assert s['original']['name'] == f'{layout["root"]}/far'
    assert s['original']['num_images'] == 9 and s['original']['unreadable'] == 1
    # auto, but the val dataset cannot be read: a warning, and no richness verdict
    capsys.readouterr()
    assert compare_tool.main([layout['cfg'], *pools, '--out', str(tmp_path / 'b'),
                              '--cfg-options',
                              f'val_dataloader.dataset.data_prefix.img_path={tmp_path}/gone']) == 0
    err = capsys.readouterr().err
    assert 'warning: original domain val_dataloader.dataset cannot be read' in err
    with open(tmp_path / 'b' / 'summary.json') as f:
        assert json.load(f)['original'] is None


def test_teacher_settings_from_each_kind_of_config(layout, compare_tool, tmp_path, repo_root):
    from mmengine.config import Config
    s = compare_tool.teacher_settings(Config.fromfile(layout['cfg']))
    assert (s['teacher'], s['teacher_checkpoint'], s['num_samples'], s['cache_dir'],
            s['score_batch_size']) == (layout['teacher_cfg'], layout['ckpt'], EPS,
                                       layout['cache'], 3)
    distiller = tmp_path / 'distiller.py'
    distiller.write_text("num_samples = 42\nmodel = dict(type='DataFreeDistiller', "
                         "teacher='t.py', teacher_checkpoint='t.pth', student='s.py')\n")
    s = compare_tool.teacher_settings(Config.fromfile(str(distiller)))
    assert (s['teacher'], s['teacher_checkpoint'], s['num_samples'], s['bn_layers']) == (
        't.py', 't.pth', 42, 'backbone')
    s = compare_tool.teacher_settings(Config.fromfile(osp.join(repo_root, TEACHER)))
    assert s['teacher']['type'] == 'EncoderDecoder' and s['teacher_checkpoint'] is None
    assert s['teacher']['data_preprocessor']['mean'] == [127.5, 127.5, 127.5]
    assert s['num_samples'] is None
    empty = tmp_path / 'empty.py'
    empty.write_text('x = 1\n')
    with pytest.raises(ValueError, match=r'empty.py: no teacher found'):
        compare_tool.teacher_settings(Config.fromfile(str(empty)))


def _pool(p5, p25, median, entropy=6.0, n=100, kept=10):
    return dict(num_images=n, entropy=dict(mean=entropy, median=entropy, variance=0.1),
                distance=dict(p5=p5, p25=p25, median=median), selected_in_merge=kept)


def test_verdict_rules():
    from mmseg_dfss.core.pool_compare import add_verdicts
    s = add_verdicts(dict(eps=20, original=None, pools=dict(
        best=_pool(10, 20, 30, entropy=5.0),
        tail=_pool(10.5, 21, 31, entropy=7.0),     # all three within 10 %: close
        median_only=_pool(20, 21, 32),            # median close, low tail twice as far
        far=_pool(100, 200, 300, kept=0))))
    assert s['ranking'] == ['best', 'tail', 'median_only', 'far'] and s['best_pool'] == 'best'
    v = {n: p['verdict'] for n, p in s['pools'].items()}
    assert v['best']['relevance'].startswith('relevance: best of the 4 pools (lowest median '
                                             'd 30)')
    assert v['tail']['relevance'].startswith('relevance: close to the best pool best, rank 2')
    assert v['median_only']['relevance'].startswith(
        'relevance: less relevant than best, rank 3 of 4 (median d 1.07x, p25 1.05x, p5 2.00x')
    assert 'keeps 0 of its 100 images (0%)' in v['far']['relevance']
    assert v['tail']['richness'] == ('richness: entropy mean 7.000 bits, 1 of 4 (no '
                                     'original-domain dataset to compare with)')
    s = add_verdicts(dict(eps=5, pools=dict(only=_pool(1, 2, 3, entropy=6.5, n=50)),
                          original=dict(num_images=10, entropy=dict(mean=6.0))))
    v = s['pools']['only']['verdict']
    assert v['relevance'].startswith('relevance: the only pool (median d 3)')
    assert v['richness'] == ('richness: meets Eq. 6 (entropy mean 6.500 >= the original '
                             "domain's 6.000 bits); scale: 50 images, 5x the original "
                             "domain's 10")


def test_pools_to_train_on():
    """The verdict names the pools a DFSS run trains on: the best and those close to it
    (Eq. 5); with an original domain, not one below its entropy (Eq. 6)."""
    from mmseg_dfss.core.pool_compare import add_verdicts
    s = add_verdicts(dict(eps=20, original=None, pools=dict(
        far=_pool(100, 200, 300, kept=0),
        tail=_pool(10.5, 21, 31),
        best=_pool(10, 20, 30),
        median_only=_pool(20, 21, 32))))
    assert s['used'] == ['tail', 'best']  # the summary's pool order
    assert s['verdict'].startswith('used: tail, best (the most relevant pool best and the '
                                   'pools within 1.10x of its d, merged for scale); left out: ')
    assert 'median_only (less relevant: d p5 2.00x those of best, over 1.10x)' in s['verdict']
    assert 'far (less relevant: d p5 10.00x, p25 10.00x, median 10.00x' in s['verdict']
    s = add_verdicts(dict(eps=5, original=dict(num_images=10, entropy=dict(mean=6.0)),
                          pools=dict(best=_pool(10, 20, 30, entropy=5.0),
                                     poor=_pool(10, 20, 30.5, entropy=5.5),
                                     rich=_pool(10, 20, 31, entropy=6.5))))
    assert s['used'] == ['best', 'rich']  # the best is used even below the original
    assert "poor (entropy mean 5.500 below the original domain's 6.000 bits)" in s['verdict']
    s = add_verdicts(dict(eps=5, original=None, pools=dict(only=_pool(1, 2, 3))))
    assert (s['used'], s['verdict']) == (['only'], 'one pool: only is used')
