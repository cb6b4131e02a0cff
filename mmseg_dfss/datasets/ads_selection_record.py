"""The record of which images ADS kept for training, by image identity.

:class:`ADSDataset` appends every image it keeps to
``cache_dir/selections/<key>.jsonl`` (its absolute path, file stamp and the sha256
of its bytes); :class:`ADSHeldOutDataset` leaves out every recorded image, so a
held-out image is never one a student with that selection trained on, even after
the pool changed (ranks moved), with pools that share files, or with copies of one
file at two paths. The key is the strategy, eps and teacher weights (or the seed of
``'random'``), never the pool: a changed pool finds the old record.
"""
import hashlib
import json
import os
import os.path as osp

from mmengine.dist import barrier, broadcast_object_list, get_dist_info
from mmengine.logging import print_log

from ..core.fingerprint import file_stamp

RECORD_FOLDER = 'selections'


def selection_key(strategy, num_samples, teacher_record=None, seed=None):
    """The record's name: what a training selection depends on besides the pool."""
    ident = seed if strategy == 'random' else (teacher_record or {}).get('weights_digest')
    blob = json.dumps([strategy, int(num_samples), ident]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path):
    """sha256 of a file's bytes; None if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def record_path(cache_dir, key):
    return osp.join(cache_dir, RECORD_FOLDER, key + '.jsonl')


def read_record(cache_dir, key):
    """The recorded identities (dicts with ``path``, ``stamp``, ``digest``); a line
    that does not parse (a write cut short) is counted and logged."""
    path = record_path(cache_dir, key) if cache_dir else None
    if not path or not osp.exists(path):
        return []
    out, bad = [], 0
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
                out.append(dict(path=str(rec['path']), stamp=rec['stamp'],
                                digest=rec['digest']))
            except (ValueError, KeyError, TypeError):
                bad += 1
    if bad:
        print_log(f'ADS selection record {path}: {bad} unreadable line(s) skipped',
                  logger='current', level=30)
    return out


def identities(paths, known=()):
    """``{abspath: dict(path, stamp, digest)}`` of ``paths``; a digest in ``known``
    (recorded identities) is reused when path and stamp are unchanged."""
    cached = {(r['path'], json.dumps(r['stamp'])): r['digest'] for r in known}
    out = {}
    for p in paths:
        p = osp.abspath(p)
        stamp = file_stamp(p)
        digest = cached.get((p, json.dumps(stamp)))
        out[p] = dict(path=p, stamp=stamp, digest=digest or file_digest(p))
    return out


def shared_record(cache_dir, key):
    """:func:`read_record` on rank 0, the same list on every rank (the ADS cache may
    be seen by rank 0 only, as the scores are)."""
    rank, world = get_dist_info()
    record = read_record(cache_dir, key) if rank == 0 else None
    if world > 1:
        box = [record]
        broadcast_object_list(box, src=0)
        record = box[0]
    return record


def record_selection(cache_dir, key, paths):
    """Rank 0 appends the kept ``paths`` not yet recorded (path and stamp) to the
    record, and the other ranks wait for it; returns how many it added."""
    rank, world = get_dist_info()
    added = _append(cache_dir, key, paths) if cache_dir and rank == 0 else 0
    if world > 1:
        barrier()
    return added


def _append(cache_dir, key, paths):
    known = read_record(cache_dir, key)
    seen = {(r['path'], json.dumps(r['stamp'])) for r in known}
    new = [r for r in identities(paths, known).values()
           if (r['path'], json.dumps(r['stamp'])) not in seen]
    if new:
        path = record_path(cache_dir, key)
        os.makedirs(osp.dirname(path), exist_ok=True)
        # appended whole lines (two runs sharing the cache both add), never through a link
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, 'w') as f:
            f.write(''.join(json.dumps(r) + '\n' for r in new))
            f.flush()
            os.fsync(f.fileno())
    return len(new)


__all__ = ['selection_key', 'record_selection', 'read_record', 'shared_record', 'identities',
           'file_digest', 'record_path']
