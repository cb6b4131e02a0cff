"""MMSeg's tools/test.py builds MMEngine's Runner directly; under runner_from_registry a
config's runner_type (DFSSRunner) is built instead, as MMSeg's train.py does."""
from mmengine.config import Config
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from mmseg_dfss.utils.mmseg_tools import runner_from_registry


def test_runner_type_is_built_through_the_registry(monkeypatch):
    from mmseg_dfss.engine import DFSSRunner
    monkeypatch.setattr(DFSSRunner, 'from_cfg', classmethod(lambda cls, cfg: ('dfss', cfg)))
    original = Runner.__dict__['from_cfg']
    cfg = Config(dict(runner_type='DFSSRunner', default_scope='mmseg'))
    with runner_from_registry():
        assert Runner.from_cfg(cfg)[0] == 'dfss'
        assert RUNNERS.get('DFSSRunner') is DFSSRunner
    assert Runner.__dict__['from_cfg'] is original  # restored
