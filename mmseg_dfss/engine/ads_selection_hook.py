"""Keeps a resumed DFSS run on the ADS selection it started with."""
import hashlib

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

from ..datasets.ads_dataset import ADSDataset


def selection_fingerprint(dataset):
    """sha256 over the kept pool images' paths, in selection order."""
    paths = [dataset.dataset.get_data_info(int(i))['img_path'] for i in dataset.selected]
    return hashlib.sha256('\n'.join(paths).encode('utf-8')).hexdigest(), len(paths)


@HOOKS.register_module()
class ADSSelectionHook(Hook):
    """Writes the fingerprint of the ADS selection into every checkpoint and checks it
    when a run resumes.

    The selection is recomputed (from the score cache) when training restarts; if pool
    files were added or removed in between, the student would silently go on learning
    from other images. With this hook that is an error naming both selections' sizes
    (``on_mismatch='warn'`` logs it and goes on).
    """

    priority = 'NORMAL'

    def __init__(self, on_mismatch='error'):
        if on_mismatch not in ('error', 'warn'):
            raise ValueError(f"ADSSelectionHook: on_mismatch must be 'error' or 'warn', "
                             f'got {on_mismatch!r}')
        self.on_mismatch = on_mismatch

    @staticmethod
    def _ads_dataset(runner):
        """The training ADSDataset, only if the train loop is already built."""
        loop = getattr(runner, '_train_loop', None)
        if loop is None or isinstance(loop, dict):
            return None
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
        return dataset if isinstance(dataset, ADSDataset) else None

    def before_save_checkpoint(self, runner, checkpoint):
        dataset = self._ads_dataset(runner)
        if dataset is not None:
            fingerprint, count = selection_fingerprint(dataset)
            checkpoint.setdefault('meta', {})['ads_selection'] = dict(
                fingerprint=fingerprint, num_samples=count, strategy=dataset.strategy)
            if dataset.teacher_record is not None:  # which teacher scored
                checkpoint['meta']['ads_selection']['teacher'] = {
                    k: dataset.teacher_record[k] for k in ('checkpoint', 'weights_digest')}

    def after_load_checkpoint(self, runner, checkpoint):
        saved = checkpoint.get('meta', {}).get('ads_selection')
        dataset = self._ads_dataset(runner)
        if saved is None or dataset is None:
            return
        fingerprint, count = selection_fingerprint(dataset)
        teacher, now = saved.get('teacher'), dataset.teacher_record
        teacher_changed = bool(teacher and now
                               and teacher['weights_digest'] != now['weights_digest'])
        if fingerprint == saved['fingerprint'] and not teacher_changed:
            print_log(f'ADS selection unchanged since the checkpoint ({count} images)',
                      logger='current')
            return
        msg = (f'the ADS selection differs from the checkpoint\'s: it kept '
               f'{saved["num_samples"]} images ({saved["strategy"]}), now {count} '
               f'({dataset.strategy}) with other images; the pool or the ADS settings '
               'changed since the run started')
        if teacher_changed:
            msg = (f'the ADS teacher is not the one the run started with: teacher_checkpoint '
                   f'{now["checkpoint"]!r} holds other weights (sha256 '
                   f'{now["weights_digest"][:16]}..., the run started with '
                   f'{teacher["weights_digest"][:16]}... from {teacher["checkpoint"]!r}); '
                   'restore that file. ' + msg)
        if self.on_mismatch == 'error':
            raise RuntimeError(f'ADSSelectionHook: {msg}. Restore the pool, or resume with '
                               "custom_hooks' ADSSelectionHook(on_mismatch='warn')")
        print_log(f'ADSSelectionHook: {msg}; continuing', logger='current', level=30)
