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


def test_curves_draw_labelled_reference_lines_and_start_y_at_zero():
    from recplat.report.plots import curves_figure

    fig = curves_figure({"LLM-Rec": [(0, 0.15), (30, 0.17), (60, 0.21)]}, "Validation recall@10",
                        references={"random ranking": 0.099, "popularity": 0.32, "missing": None})
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"LLM-Rec", "random ranking (0.099)", "popularity (0.32)"}  # None: not drawn
    assert list(lines["popularity (0.32)"].get_ydata()) == [0.32, 0.32]  # horizontal, at its value
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] > 0.32
    assert ax.get_title() == "Validation recall@10"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(lines)


def test_a_reference_line_alone_still_gets_a_legend_and_the_empty_note():
    from recplat.report.plots import curves_figure

    ax = curves_figure({"LLM-Rec": []}, "Training loss", references={"chance level ln(1+S)": 2.398}).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["chance level ln(1+S) (2.4)"]
    assert any(t.get_text() == "no points recorded" for t in ax.texts)
