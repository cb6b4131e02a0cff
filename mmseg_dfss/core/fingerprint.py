"""What a cached result depends on: setup fingerprints and file stamps.

A score (or a teacher label) is reused only when the setup that made it hashes to the
same fingerprint and each image file still has the same stamp (size in bytes and
mtime): an image overwritten in place is scored again, never served stale.
"""
import hashlib
import json
import os
import time


def jsonable(obj):
    """``obj`` as plain JSON types (anything else by its ``repr``), keys sorted: the
    form in which a config part enters a fingerprint."""
    return json.loads(json.dumps(obj, sort_keys=True, default=repr))


def setup_fingerprint(parts):
    """sha256 of a dict of JSON-able setup parts (sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=repr).encode('utf-8')
    return hashlib.sha256(blob).hexdigest()


def file_stamp(path):
    """``[size, mtime_ns]`` of a file, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def describe_stamp(stamp):
    """A file stamp in words, for an error message."""
    if stamp is None:
        return 'missing'
    size, mtime_ns = stamp
    return f'{size} bytes, mtime {time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(mtime_ns / 1e9))}'


__all__ = ['jsonable', 'setup_fingerprint', 'file_stamp', 'describe_stamp']
