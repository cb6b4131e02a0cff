"""Files the tools write (figures, tables, configs) appear whole under their name, as new
files: a link planted under that name is replaced, never written through."""
import os

from mmseg_dfss.core.atomic_file import save_figure


def test_a_figure_replaces_a_planted_link_and_is_a_png(tmp_path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    victim = tmp_path / 'users_file.png'
    victim.write_bytes(b'the user\'s bytes')
    path = tmp_path / 'out' / 'figure.png'
    path.parent.mkdir()
    os.symlink(victim, path)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    save_figure(fig, str(path), dpi=50)
    plt.close(fig)
    assert victim.read_bytes() == b'the user\'s bytes'
    assert not path.is_symlink() and path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert os.listdir(path.parent) == ['figure.png']
