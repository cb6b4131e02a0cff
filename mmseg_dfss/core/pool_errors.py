"""Why running the teacher over a pool's images stopped (ADS scoring, teacher labelling).

An unreadable image is not among them: it is skipped, counted and cached. These stop
the run, and each says what to fix. Under torch.distributed every rank stops with the
same type (see :func:`mmseg_dfss.core.rank_coordination.rank_error`).
"""


class ScorePipelineError(RuntimeError):
    """The score pipeline (a config error) failed on an image: never a skip."""


class TooManyUnreadableError(RuntimeError):
    """More than ``max_unreadable`` of the pool could not be read."""


class ScoreIOError(OSError):
    """A transient I/O error that outlasted its retries (nothing is cached for it)."""


class SetupMismatchError(RuntimeError):
    """Ranks of one distributed scoring see different setups or pools."""


POOL_ERRORS = (ScorePipelineError, TooManyUnreadableError, ScoreIOError, SetupMismatchError)

__all__ = ['ScorePipelineError', 'TooManyUnreadableError', 'ScoreIOError', 'SetupMismatchError',
           'POOL_ERRORS']
