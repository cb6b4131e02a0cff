"""How the ranks of one distributed pool scoring stay in step.

All ranks must score one setup over one pool (checked, with the first difference
named), start from one view of the score cache (rank 0 reads it and broadcasts what
it read before anyone appends), and stop together: an error on one rank reaches
every rank, or the others would wait forever in the next collective. Each function
that gathers or broadcasts is a collective: every rank calls it, in the same order.
"""
import os
import os.path as osp
import socket
import uuid

from mmengine.dist import all_gather_object, broadcast_object_list
from mmengine.logging import print_log

from .fingerprint import describe_stamp, setup_fingerprint
from .pool_errors import POOL_ERRORS, SetupMismatchError

# pool entries per digest when ranks compare their pools (a mismatch sends one chunk)
POOL_CHUNK = 4096


def broadcast(obj):
    """Rank 0's ``obj``, on every rank."""
    box = [obj]
    broadcast_object_list(box, src=0)
    return box[0]


def gather_parts(part, exc=None):
    """Every rank's ``part`` (a dict) merged, and the lowest rank's error as
    ``(rank, type name, message)`` (None when no rank failed). An exception may not
    pickle: only its type name and text travel."""
    gathered = all_gather_object((part, None if exc is None else (type(exc).__name__,
                                                                  str(exc))))
    merged = {}
    for p, _ in gathered:
        merged.update(p)
    errors = [(r, *e) for r, (_, e) in enumerate(gathered) if e is not None]
    return merged, (errors[0] if errors else None)


def rank_error(rank, name, message):
    """The error another rank stopped with, to raise here: the same type for the
    errors of :mod:`mmseg_dfss.core.pool_errors`, else a RuntimeError naming it."""
    ours = {c.__name__: c for c in POOL_ERRORS}
    if name in ours:
        return ours[name](f'(on rank {rank}) {message}')
    return RuntimeError(f'ADS scoring failed on rank {rank}: {name}: {message}')


def check_same_setup(parts, paths, stamps):
    """Every rank must score the same setup and see the same pool files; otherwise
    they would write different scores under one cache. Raises
    :class:`SetupMismatchError` on every rank, naming what differs."""
    digests = {k: setup_fingerprint(v) for k, v in parts.items()}
    chunks = [setup_fingerprint([paths[k:k + POOL_CHUNK], stamps[k:k + POOL_CHUNK]])
              for k in range(0, len(paths), POOL_CHUNK)]
    everyone = all_gather_object((socket.gethostname(), len(paths), digests, chunks))
    bad = [r for r, e in enumerate(everyone) if e[1:] != everyone[0][1:]]
    if not bad:
        return
    r = bad[0]
    (host0, n0, dig0, ch0), (host, n, dig, ch) = everyone[0], everyone[r]
    where = f'rank {r} (host {host}) and rank 0 (host {host0})'
    if n != n0 or ch != ch0:
        detail = _first_pool_difference(paths, stamps, r, (n0, ch0), (n, ch))
        raise SetupMismatchError(
            f'ADS: {where} see different pools: {detail}. All ranks must read the same '
            'pool files, e.g. from one shared filesystem.')
    diff = [k for k in sorted(set(dig0) | set(dig)) if dig0.get(k) != dig.get(k)
            and k != 'pool']
    raise SetupMismatchError(
        f'ADS: {where} have different scoring setups ({", ".join(diff)} differ); all '
        'ranks must use the same teacher, teacher_checkpoint and score settings.')


def _first_pool_difference(paths, stamps, r, summary0, summary):
    """The first pool entry in which rank ``r`` differs from rank 0, in words. A
    collective: every rank sends its entries of the first differing chunk."""
    (n0, ch0), (n, ch) = summary0, summary
    c = next((k for k, (a, b) in enumerate(zip(ch0, ch)) if a != b), min(len(ch0), len(ch)))
    lo = c * POOL_CHUNK
    rows = all_gather_object((paths[lo:lo + POOL_CHUNK], stamps[lo:lo + POOL_CHUNK]))
    (p0, s0), (p1, s1) = rows[0], rows[r]
    m = min(len(p0), len(p1))
    j = next((j for j in range(m) if p0[j] != p1[j] or s0[j] != s1[j]), m)
    if j >= m:
        return f'the pool has {n0} images on rank 0 and {n} on rank {r}'
    if p0[j] != p1[j]:
        return (f'pool image {lo + j} is {p0[j]!r} on rank 0 but {p1[j]!r} on rank {r} '
                '(a node-local data_root or path?)')
    return (f'pool image {lo + j} {p0[j]!r} has file stamps ({describe_stamp(s0[j])}) on '
            f'rank 0 but ({describe_stamp(s1[j])}) on rank {r} (a copy of the pool that '
            'differs between nodes?)')


def shared_cache_view(cache, size_cache, paths, stamps, rank, world):
    """One view of the cache for all ranks: rank 0 prepares and reads the score
    cache (and the cached image sizes) and broadcasts what it read; nobody appends
    before that broadcast. Returns ``(done, known)``: ``{index: (score, error)}``
    of the cached scores and ``{index: (h, w) or error}`` of cached sizes."""
    state = None
    if rank == 0:
        try:
            state = ('ok', *_read_cache(cache, size_cache, paths, stamps, world))
        except Exception as e:
            if world == 1:
                raise
            state = ('error', f'{type(e).__name__}: {e}', None, None)
    if world > 1:
        state = broadcast(state)
    if state[0] == 'error':
        raise RuntimeError(f'ADS: rank 0 could not read the score cache: {state[1]}')
    _, done, known, token = state
    if world > 1 and cache is not None:
        check_shared_folder(cache.dir, token, rank)
    return done, known


def _read_cache(cache, size_cache, paths, stamps, world):
    """Rank 0's reading of the caches; under several ranks it also leaves a token
    file in the cache folder, for :func:`check_shared_folder`."""
    done, known, token = {}, {}, None
    if cache is None:
        return done, known, token
    cache.prepare()
    done = cache.load()
    if done:
        print_log(f'ADS cache {cache.dir}: reusing {len(done)}/{len(paths)} scores',
                  logger='current')
    cached = size_cache.load()
    for i, path in enumerate(paths):
        if i not in done and path in cached and cached[path][0] == stamps[i]:
            known[i] = cached[path][1]
    if world > 1:
        token = f'.rank0-{uuid.uuid4().hex}'
        open(osp.join(cache.dir, token), 'w').close()
    return done, known, token


def check_shared_folder(folder, token, rank):
    """Every rank must see the ``token`` file rank 0 wrote into ``folder`` (one
    folder on a filesystem all nodes share); rank 0 removes it afterwards."""
    seen = all_gather_object((socket.gethostname(), osp.abspath(folder),
                              osp.exists(osp.join(folder, token))))
    if rank == 0:
        os.remove(osp.join(folder, token))
    blind = [(r, h, d) for r, (h, d, ok) in enumerate(seen) if not ok]
    if blind:
        r, h, d = blind[0]
        raise SetupMismatchError(
            f'ADS: cache_dir is not shared between ranks: rank {r} (host {h}) does not '
            f'see, in {d}, the file rank 0 (host {seen[0][0]}) wrote in {seen[0][1]}. '
            'Put cache_dir on a filesystem all nodes share.')


__all__ = ['broadcast', 'gather_parts', 'rank_error', 'check_same_setup',
           'shared_cache_view', 'check_shared_folder', 'POOL_CHUNK']
