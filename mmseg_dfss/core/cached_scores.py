"""Reading a pool's ADS scores from the score cache alone: nothing is scored.

Tools that only *use* an ADS ranking (INT8 calibration images, held-out images) must
not quietly score a large pool with the teacher for an hour: they read the scores that
``tools/ads_score.py`` or training left in the cache, and stop with an error saying how
to make them when the cache does not hold every pool image.
"""
from mmengine.logging import print_log

from .pool_scorer import PoolScorer
from .score_cache import ScoreCache


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

    def _shared_view(self, fp, paths, stamps, layers, n, rank, world):
        cache = ScoreCache(self.cache_dir, fp, paths, self.strategy, rank=rank)
        done = cache.load()
        if len(done) < n:
            raise MissingScoresError(
                f'the ADS score cache {cache.dir} holds {len(done)} of the {n} pool images\' '
                f'{self.strategy} scores (none scored here; the cache is keyed by the teacher '
                f'weights, its config, the pool files and the score settings): run '
                f'`{self.hint}` first')
        print_log(f'ADS cache {cache.dir}: read {n} {self.strategy} scores (nothing scored)',
                  logger='current')
        return done, {}, None


__all__ = ['CachedScoresOnly', 'MissingScoresError']
