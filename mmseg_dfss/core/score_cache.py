"""On-disk cache of per-image ADS scores, written incrementally (JSON lines).

A cache lives in ``<cache_dir>/<strategy>-<fingerprint[:16]>/``: ``meta.json``
holds the full fingerprint (teacher weights, teacher config, pool file list,
layers, score pipeline, strategy), and each process appends its scores to
``part-<rank>.jsonl`` as soon as a batch is scored, so an interrupted scoring
resumes where it stopped. Every line carries its own CRC and the pool image path
it belongs to; a damaged, truncated or foreign line is dropped (and that image
scored again), a ``meta.json`` for another fingerprint empties the folder.
No pickle is read or written.
"""
import glob
import json
import math
import os
import os.path as osp
import zlib

from mmengine.logging import print_log

from .atomic_file import atomic_write, open_for_append

CACHE_FORMAT = 'mmseg-dfss-ads-scores/1'
_LINE_KEYS = {'i', 'path', 'score', 'error', 'crc'}


def _encode_score(score):
    if score is None:
        return None
    score = float(score)
    return score if math.isfinite(score) else repr(score)  # 'nan', 'inf', '-inf'


def _decode_score(value):
    if value is None or isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if value in ('nan', 'inf', '-inf'):
        return float(value)
    raise ValueError(f'bad score {value!r}')


def _crc(i, path, score, error):
    payload = json.dumps([i, path, score, error], sort_keys=True, ensure_ascii=True)
    return zlib.crc32(payload.encode('utf-8'))


class ScoreCache:
    """Per-image scores of one scoring setup, keyed by its fingerprint.

    Args:
        cache_dir: parent folder of all caches.
        fingerprint: hex digest identifying the setup (see
            :func:`mmseg_dfss.core.fingerprint.setup_fingerprint`).
        paths: the pool's image paths in pool-index order; a cached line is
            trusted only if its path matches.
        strategy: used in the folder name, for people browsing the folder.
        describe: small JSON-able dict written into ``meta.json`` for humans.
        rank: this process's rank (its part file).
    """

    def __init__(self, cache_dir, fingerprint, paths, strategy='ads', describe=None, rank=0):
        self.fingerprint = fingerprint
        self.paths = list(paths)
        self.dir = osp.join(cache_dir, f'{strategy}-{fingerprint[:16]}')
        self.meta_path = osp.join(self.dir, 'meta.json')
        self.part_path = osp.join(self.dir, f'part-{rank}.jsonl')
        self.describe = describe or {}
        self.num_damaged = 0
        self._fh = None

    def _meta_ok(self):
        try:
            with open(self.meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return False
        return (isinstance(meta, dict) and meta.get('format') == CACHE_FORMAT
                and meta.get('fingerprint') == self.fingerprint
                and meta.get('num_images') == len(self.paths))

    def prepare(self):
        """Creates the folder; a foreign or damaged ``meta.json`` empties it.
        Call on one process only (rank 0), before any :meth:`load`."""
        os.makedirs(self.dir, exist_ok=True)
        if self._meta_ok():
            return
        stale = glob.glob(osp.join(self.dir, 'part-*.jsonl'))
        if osp.exists(self.meta_path) or stale:
            print_log(f'ADS cache {self.dir}: meta.json missing, damaged or for another setup; '
                      f'discarding {len(stale)} part file(s) and scoring again',
                      logger='current', level=30)
        for p in stale:
            os.remove(p)
        with atomic_write(self.meta_path) as f:
            json.dump(dict(format=CACHE_FORMAT, fingerprint=self.fingerprint,
                           num_images=len(self.paths), setup=self.describe), f, indent=1)

    def _parse(self, line):
        rec = json.loads(line)
        if not isinstance(rec, dict) or set(rec) != _LINE_KEYS:
            raise ValueError('bad keys')
        i, path, score, error = rec['i'], rec['path'], rec['score'], rec['error']
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.paths):
            raise ValueError('bad index')
        if path != self.paths[i]:
            raise ValueError('path does not match the pool')
        if error is not None and not isinstance(error, str):
            raise ValueError('bad error')
        if (score is None) == (error is None):
            raise ValueError('exactly one of score/error must be set')
        if rec['crc'] != _crc(i, path, score, error):
            raise ValueError('crc mismatch')
        return i, _decode_score(score), error

    def load(self):
        """``{index: (score or None, error or None)}`` of every valid cached line."""
        entries = {}
        self.num_damaged = 0
        if not self._meta_ok():
            return entries
        for part in sorted(glob.glob(osp.join(self.dir, 'part-*.jsonl'))):
            with open(part, 'rb') as f:
                raw = f.read()
            for line in raw.split(b'\n'):
                if not line.strip():
                    continue
                try:
                    i, score, error = self._parse(line.decode('utf-8'))
                except (ValueError, UnicodeDecodeError):
                    self.num_damaged += 1
                    continue
                entries.setdefault(i, (score, error))
        if self.num_damaged:
            print_log(f'ADS cache {self.dir}: {self.num_damaged} damaged line(s) ignored; '
                      'those images are scored again', logger='current', level=30)
        return entries

    def _open(self):
        if self._fh is None:
            os.makedirs(self.dir, exist_ok=True)
            self._fh = open_for_append(self.part_path)
            # an interrupted write may have left a partial last line: start a fresh one
            if self._fh.tell() > 0:
                with open(self.part_path, 'rb') as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b'\n':
                        self._fh.write(b'\n')
        return self._fh

    def write(self, records):
        """Appends ``(index, score, error)`` records and flushes them to disk."""
        fh = self._open()
        for i, score, error in records:
            i = int(i)
            enc = None if error is not None else _encode_score(score)
            line = dict(i=i, path=self.paths[i], score=enc, error=error,
                        crc=_crc(i, self.paths[i], enc, error))
            fh.write((json.dumps(line, ensure_ascii=True) + '\n').encode('utf-8'))
        fh.flush()
        os.fsync(fh.fileno())

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None


SIZES_FILE = 'image_sizes.jsonl'


class SizeCache:
    """Image sizes read from file headers, kept beside the score caches
    (``<cache_dir>/image_sizes.jsonl``) so a rerun or a resume does not read the
    headers again. A line is trusted only while the file's stamp (size, mtime)
    is unchanged, and only with a valid CRC. ``hw`` is ``(h, w)``, or the error
    text of a file whose header could not be read.
    """

    def __init__(self, cache_dir):
        self.path = osp.join(cache_dir, SIZES_FILE)

    def load(self):
        """``{path: (stamp, (h, w) or error text)}`` of every valid line."""
        out = {}
        try:
            with open(self.path, 'rb') as f:
                raw = f.read()
        except OSError:
            return out
        for line in raw.split(b'\n'):
            try:
                rec = json.loads(line.decode('utf-8'))
                path, stamp, hw = rec['path'], rec['stamp'], rec['hw']
                if rec['crc'] != zlib.crc32(json.dumps([path, stamp, hw]).encode('utf-8')):
                    continue
            except (ValueError, UnicodeDecodeError, KeyError, TypeError):
                continue
            out[path] = (stamp, tuple(hw) if isinstance(hw, list) else hw)
        return out

    def append(self, entries):
        """Appends ``(path, stamp, (h, w) or error text)`` entries (one process only)."""
        if not entries:
            return
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        with open_for_append(self.path) as f:
            if f.tell() > 0:  # a partial last line (interrupted write): start afresh
                with open(self.path, 'rb') as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b'\n':
                        f.write(b'\n')
            for path, stamp, hw in entries:
                hw = list(hw) if isinstance(hw, tuple) else hw
                crc = zlib.crc32(json.dumps([path, stamp, hw]).encode('utf-8'))
                f.write((json.dumps(dict(path=path, stamp=stamp, hw=hw, crc=crc)) + '\n')
                        .encode('utf-8'))
