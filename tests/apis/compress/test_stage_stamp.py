"""A stage is finished only for the inputs it recorded and while its outputs exist."""
from mmseg_dfss.apis.compress.stage_stamp import digest, finished, mark_finished


def test_finished_needs_the_same_inputs_and_the_outputs(tmp_path):
    out = tmp_path / 'a.png'
    out.write_bytes(b'x')
    key = digest('select', {'eps': 10})
    mark_finished(str(tmp_path), 'select', key, {'n': 1}, [str(out)])
    assert finished(str(tmp_path), 'select', key) == {'n': 1}
    assert finished(str(tmp_path), 'select', digest('select', {'eps': 11})) is None
    out.unlink()
    assert finished(str(tmp_path), 'select', key) is None
    assert finished(str(tmp_path), 'train', key) is None


def test_digest_chains_and_sees_nested_changes():
    a = digest('train', digest('select', 1), {'x': [1, 2]})
    assert a == digest('train', digest('select', 1), {'x': (1, 2)})
    assert a != digest('train', digest('select', 2), {'x': [1, 2]})
    assert a != digest('train', digest('select', 1), {'x': [1, 3]})
