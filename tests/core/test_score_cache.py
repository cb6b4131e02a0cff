"""ADS score cache: round trip, foreign/damaged files never trusted, resume."""
import json
import math
import os.path as osp

from mmseg_dfss.core import ScoreCache

PATHS = [f'/pool/{i:03d}.png' for i in range(6)]
FP = 'ab' * 32


def make(tmp_path, fp=FP, paths=PATHS, rank=0):
    c = ScoreCache(str(tmp_path), fp, paths, 'ads', rank=rank)
    c.prepare()
    return c


def test_round_trip_keeps_exact_scores_errors_and_non_finite(tmp_path):
    c = make(tmp_path)
    c.write([(0, 0.1 + 0.2, None), (1, float('nan'), None), (2, float('inf'), None),
             (3, None, 'AssertionError: failed to load image')])
    c.close()
    got = make(tmp_path).load()
    assert got[0] == (0.1 + 0.2, None)  # bit-exact float
    assert math.isnan(got[1][0]) and got[2][0] == float('inf')
    assert got[3] == (None, 'AssertionError: failed to load image')
    assert set(got) == {0, 1, 2, 3}


def test_parts_of_several_ranks_are_merged(tmp_path):
    a, b = make(tmp_path, rank=0), make(tmp_path, rank=1)
    a.write([(0, 1.0, None), (2, 3.0, None)])
    b.write([(1, 2.0, None)])
    a.close(), b.close()
    assert {i: s for i, (s, _) in make(tmp_path).load().items()} == {0: 1.0, 1: 2.0, 2: 3.0}


def test_foreign_fingerprint_or_pool_is_not_reused(tmp_path):
    c = make(tmp_path)
    c.write([(0, 1.0, None)])
    c.close()
    assert make(tmp_path, fp='cd' * 32).load() == {}
    # same fingerprint prefix folder but another full fingerprint in meta.json
    other = ScoreCache(str(tmp_path), FP[:16] + 'ff' * 24, PATHS, 'ads')
    assert other.dir == c.dir
    other.prepare()  # empties the folder
    assert other.load() == {}
    assert make(tmp_path).load() == {}
    # a line whose path is not the pool's path at that index is dropped
    c = make(tmp_path)
    c.write([(1, 5.0, None)])
    c.close()
    moved = make(tmp_path, paths=PATHS[1:] + PATHS[:1])
    assert moved.load() == {}


def test_damaged_lines_and_meta_are_detected(tmp_path):
    c = make(tmp_path)
    c.write([(i, float(i), None) for i in range(4)])
    c.close()
    with open(c.part_path) as f:
        lines = f.read().splitlines()
    rec = json.loads(lines[1])
    rec['score'] = 99.0  # changed value, stale CRC
    lines[1] = json.dumps(rec)
    lines[2] = '{"i": 2, "path": garbage'
    with open(c.part_path, 'w') as f:
        f.write('\n'.join(lines) + '\n' + lines[3][:25])  # truncated tail (interrupted)
    fresh = make(tmp_path)
    got = fresh.load()
    assert set(got) == {0, 3} and fresh.num_damaged == 3
    # appending after a truncated line starts a new line: nothing valid is lost
    fresh.write([(1, 1.0, None), (2, 2.0, None)])
    fresh.close()
    assert {i: s for i, (s, _) in make(tmp_path).load().items()} == {0: 0.0, 1: 1.0, 2: 2.0,
                                                                    3: 3.0}
    # zero-byte meta.json: everything is scored again
    open(c.meta_path, 'w').close()
    assert make(tmp_path).load() == {}
    assert osp.getsize(c.meta_path) > 0


def test_links_planted_in_a_shared_cache_folder_are_never_written_through(tmp_path):
    """A cache_dir shared by several users: links planted under the names the cache writes
    (meta.json, its old fixed temporary name, the part file) leave their targets as they
    were; appending through the part file's link is refused, naming it."""
    import os
    import pytest
    victims = {}
    c = ScoreCache(str(tmp_path / 'shared'), FP, PATHS, 'ads', rank=0)
    os.makedirs(c.dir)
    for name in ('meta.json', 'meta.json.tmp', osp.basename(c.part_path)):
        victims[name] = tmp_path / f'victim_{name}'
        victims[name].write_text('precious\n')
        if name == osp.basename(c.part_path):
            c.prepare()  # (it removes the part files of a foreign meta.json: plant it after)
        os.symlink(victims[name], osp.join(c.dir, name))
    with pytest.raises(OSError, match=r"part-0\.jsonl' is a symbolic link"):
        c.write([(0, 1.0, None)])
    assert all(v.read_text() == 'precious\n' for v in victims.values())
    assert json.load(open(osp.join(c.dir, 'meta.json')))['fingerprint'] == FP
