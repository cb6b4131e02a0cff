"""Reading a pool's ADS scores from the score cache alone: nothing is scored.

Tools that only *use* an ADS ranking (INT8 calibration images, held-out images) must
not quietly score a large pool with the teacher for an hour: they read the scores that
``tools/ads_score.py`` or training left in the cache, and stop with an error saying how
to make them when the cache does not hold every pool image.
"""
from mmengine.logging import print_log

from .pool_scorer import PoolScorer


class MissingScoresError(RuntimeError):
    """The score cache lacks some (or all) of the pool's scores."""


class CachedScoresOnly(PoolScorer):
    """A :class:`PoolScorer` whose ``score()`` reads the cache and scores nothing.

    The fingerprint (teacher weights and config, pool files, layers, score pipeline)
    is computed exactly as for scoring, so the same cache folder is found; nothing is
    written into it. ``hint`` is the command named in the error when scores are missing.
    """

    def __init__(self, *args, hint='python tools/ads_score.py CONFIG', **kwargs):
        super().__init__(*args, **kwargs)
        self._set_hint(hint)

    @classmethod
    def like(cls, scorer, hint='python tools/ads_score.py CONFIG'):
        """The cache-only twin of a configured :class:`PoolScorer` (e.g. an
        ``ADSDataset``'s), with all of its settings."""
        twin = cls.__new__(cls)
        twin.__dict__.update(vars(scorer))
        twin._set_hint(hint)
        return twin

    def _set_hint(self, hint):
        self.hint = hint
        if not self.cache_dir:
            raise MissingScoresError(f'no ADS cache_dir is set, so there are no cached scores '
                                     f'to read: set cache_dir and run `{hint}` first')

    def score(self, pool):
        """The cached scores of ``pool``; a cache folder that does not exist is neither
        created nor scored into."""
        import os.path as osp
        if not osp.isdir(self.cache_dir):
            raise MissingScoresError(f'there is no ADS score cache at {self.cache_dir}: run '
                                     f'`{self.hint}` first')
        return super().score(pool)

    def _score_missing(self, pool, done, known, files, teacher, cache):
        """Scores nothing: every pool image's score must be in the cache already."""
        if cache is not None:
            cache.close()
        n = len(files[0])
        if len(done) < n:
            where = cache.dir if cache is not None else self.cache_dir
            raise MissingScoresError(
                f'the ADS score cache {where} holds {len(done)} of the {n} pool images\' '
                f'{self.strategy} scores (none scored here; the cache is keyed by the teacher '
                f'weights, its config, the pool files and the score settings): run '
                f'`{self.hint}` first')
        print_log(f'ADS cache {cache.dir}: read {n} {self.strategy} scores (nothing scored)',
                  logger='current')
        return {}, []


__all__ = ['CachedScoresOnly', 'MissingScoresError']
