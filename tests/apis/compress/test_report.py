"""report.html's tables show a float to 4 significant digits (report.json keeps the
full value): a best agreement of 27.81999969482422 reads 27.82."""
from mmseg_dfss.apis.compress.report import _table


def test_table_cells_show_floats_to_four_significant_digits():
    html = _table([('best validation agreement mIoU', 27.81999969482422), ('iterations', 1500),
                   ('d median', 85.3512), ('checkpoint', 'best_mIoU_iter_1500.pth')])
    assert '<td>27.82</td>' in html and '<td>85.35</td>' in html
    assert '<td>1500</td>' in html and '<td>best_mIoU_iter_1500.pth</td>' in html
    assert '27.819' not in html
