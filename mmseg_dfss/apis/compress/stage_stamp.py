"""When a compress stage is done: its outputs exist and ``DIR/.stages/<stage>.json``
records the digest of its inputs. A stage's digest chains the digests of the stages
it reads, so a changed argument reruns that stage and the ones after it."""
import hashlib
import json
import os
import os.path as osp

from ...core.atomic_file import atomic_write

STAMP_DIR = '.stages'


def digest(*parts):
    """The sha256 of the JSON of ``parts`` (sorted keys; tuples as lists)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def _stamp_path(work_dir, stage):
    return osp.join(work_dir, STAMP_DIR, f'{stage}.json')


def finished(work_dir, stage, key):
    """The result a finished stage recorded for inputs ``key``, or None: no stamp, a
    stamp of other inputs, or one of its recorded output files is gone."""
    try:
        with open(_stamp_path(work_dir, stage), encoding='utf-8') as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    if stamp.get('key') != key:
        return None
    if not all(osp.exists(p) for p in stamp.get('outputs', [])):
        return None
    return stamp.get('result')


def mark_finished(work_dir, stage, key, result, outputs):
    """Records that ``stage`` produced ``outputs`` (paths) and ``result`` for ``key``."""
    os.makedirs(osp.join(work_dir, STAMP_DIR), exist_ok=True)
    with atomic_write(_stamp_path(work_dir, stage), encoding='utf-8') as f:
        json.dump(dict(key=key, result=result, outputs=sorted(outputs)), f, indent=1)
