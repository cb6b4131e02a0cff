"""Validates again the iteration a run resumes from, when it was a validation point.

MMEngine's ``IterBasedTrainLoop`` saves the periodic checkpoint of iteration N (in
``after_train_iter``) before it validates at N. A run killed during that validation
resumes at N + 1 and never validates N: the best-by-mIoU checkpoint can then differ
from an uninterrupted run's. Validating N first on resume (the same weights, the same
held-out images) makes the resumed run keep the same best checkpoint."""
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class ResumedValidationHook(Hook):
    """Before training resumes at a validation iteration, runs the validation loop."""

    priority = 'LOWEST'  # after CheckpointHook.before_train (its file backend, best score)

    def before_train(self, runner):
        loop = runner.train_loop
        interval = getattr(loop, 'val_interval', None)
        if runner.val_loop is None or not interval or runner.iter == 0:
            return
        if runner.iter >= getattr(loop, 'val_begin', 1) and runner.iter % interval == 0:
            runner.logger.info(f'resumed at iteration {runner.iter}, a validation point: '
                               'validating it (it may not have finished before the stop)')
            runner.val_loop.run()
