import stat
import warnings

from recplat.report.plots import curves, grouped_bars

PNG = b"\x89PNG\r\n\x1a\n"


def test_curves_and_bars_write_png(tmp_path):
    a = curves({"llmrec": [(1, 2.4), (2, 2.1)], "sasrec": [(1, 3.0)]}, tmp_path / "loss.png", "loss")
    b = grouped_bars({"llmrec": {"recall@10": 0.16}, "sasrec": {"recall@10": 0.61}}, tmp_path / "m.png", "test")
    for path in (a, b):
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "m.png"]  # no temp files left
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # a PNG gets the mode of any other output file (not mkstemp's 0600)
    assert {stat.S_IMODE(path.stat().st_mode) for path in (a, b)} == {stat.S_IMODE(plain.stat().st_mode)}


def test_curves_without_points_draw_a_note_not_an_empty_legend(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "No artists with labels" on an empty legend
        path = curves({"llmrec": []}, tmp_path / "loss.png", "loss")
    assert path.read_bytes()[:8] == PNG
