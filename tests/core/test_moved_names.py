"""Names that moved when ``core/pool_scorer.py`` and ``utils/stack.py`` were split up
(issue 23) stay importable from their old places, for code and docs written against
them, and they still do their job there."""
import importlib

import numpy as np
import pytest

OLD_PLACES = {
    'mmseg_dfss.core.pool_scorer': ['select_lowest', 'eq11_weights', 'check_num_samples',
                                    'setup_fingerprint', 'plan_batches', 'ScorePipelineError',
                                    'TooManyUnreadableError', 'ScoreIOError',
                                    'SetupMismatchError', 'DEFAULT_SCORE_PIPELINE'],
    'mmseg_dfss.utils.stack': ['check_stack', 'detect_stack', 'StackError', 'REQUIREMENTS',
                               'MAINTAINED', 'LEGACY', 'map_mmseg_scope'],
    'mmseg_dfss.datasets.unlabeled_image': ['IMG_EXTENSIONS'],
}


@pytest.mark.parametrize('module', sorted(OLD_PLACES))
def test_moved_names_import_from_their_old_place(module):
    mod = importlib.import_module(module)
    missing = [name for name in OLD_PLACES[module] if not hasattr(mod, name)]
    assert missing == []


def test_old_names_still_select_weigh_and_check_the_stack():
    from mmseg_dfss.core.pool_scorer import eq11_weights, select_lowest
    from mmseg_dfss.utils.stack import StackError, detect_stack
    assert select_lowest([3.0, 1.0, np.nan, 2.0], 2).tolist() == [1, 3]
    np.testing.assert_allclose(eq11_weights([1.0, 2.0, 3.0]), [1.0, 0.5, 0.0])
    with pytest.raises(StackError, match='no complete OpenMMLab line'):
        detect_stack({})
