"""Bad output folders and model paths: one line naming the place, exit 2, before Ray starts, and
nothing that exists is touched (issue 19 items 5 and 11)."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from recplat.cli import main
from recplat.preflight import check_model_name, looks_like_local_path


@pytest.fixture
def no_ray(monkeypatch):
    """These errors must come before Ray starts: starting it fails the test."""
    import recplat.runtime

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the bad input was reported")

    monkeypatch.setattr(recplat.runtime, "init_ray", refuse)


@contextlib.contextmanager
def tmpfs(path, options):
    """A real tmpfs mounted at `path` (needs root, or skips)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("recplat: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _notes(folder):
    folder.mkdir(parents=True)
    (folder / "notes.md").write_text("a user's notes")
    return folder


def test_prepare_overwrite_refuses_a_folder_recplat_did_not_write(tmp_path, no_ray, capsys):
    notes = _notes(tmp_path / "mine")
    assert main(["prepare", "--out", str(notes), "--overwrite"]) == 2
    err = _one_line_error(capsys)
    assert f"{notes}: not a folder recplat wrote" in err and "refusing to replace it" in err
    assert [p.name for p in notes.iterdir()] == ["notes.md"]
    assert main(["prepare", "--out", str(notes)]) == 2  # without --overwrite: exists
    assert "already exists" in _one_line_error(capsys)


def test_run_and_demo_never_replace_a_data_folder_recplat_did_not_write(tmp_path, no_ray, capsys):
    out = tmp_path / "run"
    notes = _notes(out / "data")
    assert main(["run", "llmrec/table4_sasrec", "--profile", "smoke", "--out", str(out)]) == 2
    assert f"{notes}: not a folder recplat wrote" in _one_line_error(capsys)
    demo = tmp_path / "demo"
    notes = _notes(demo / "data")
    assert main(["demo", "--out", str(demo)]) == 2
    assert f"{notes}: not a folder recplat wrote" in _one_line_error(capsys)
    assert (notes / "notes.md").read_text() == "a user's notes"


def test_out_whose_parent_is_a_file(tmp_path, no_ray, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["prepare", "--out", str(tmp_path / "file" / "ds")]) == 2
    err = _one_line_error(capsys)
    assert f"{tmp_path / 'file' / 'ds'}: cannot write: a path component is a file" in err
    assert (tmp_path / "file").read_text() == "x"


def test_out_on_a_read_only_file_system(tmp_path, no_ray, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        assert main(["prepare", "--out", str(ro / "ds")]) == 2
        assert f"{ro / 'ds'}: cannot write: read-only file system" in _one_line_error(capsys)
        assert main(["run", "llmrec/table4_sasrec", "--profile", "smoke", "--out", str(ro / "run")]) == 2
        assert f"{ro / 'run'}: cannot write: read-only file system" in _one_line_error(capsys)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_full_disk_during_prepare_is_one_line(tmp_path, ray_local, capsys):
    """A real full disk: a 48 KiB tmpfs fills up inside the Ray Data write tasks."""
    with tmpfs(tmp_path / "small", "size=48k") as small:
        keep = _notes(small / "other")
        code = main(["prepare", "--preset", "synthetic", "--out", str(small / "ds"), "sources.0.users=200",
                     "sources.0.items_per_domain=40", "num_partitions=2"])
        assert code == 2
        err = capsys.readouterr().err  # the stage lines of prepare's progress, then the error
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"recplat: error: {small / 'ds'}: cannot write: no space left on the device"), err
        assert "Traceback" not in err, err
        assert sorted(p.name for p in small.iterdir()) == ["other"]  # no partial, no lock left
        assert (keep / "notes.md").read_text() == "a user's notes"


def test_a_model_path_that_does_not_exist_is_named_before_ray(tmp_path, no_ray, capsys):
    missing = tmp_path / "no" / "such-model"
    code = main(["run", "llmrec/table4_bert", "--profile", "smoke", "--out", str(tmp_path / "run"),
                 f"recipe.model.name={missing}"])
    assert code == 2
    err = _one_line_error(capsys)
    assert f"recipe.model.name: {missing}: no such folder" in err and "jobs/llmrec/table4_bert.yaml" in err
    assert not (tmp_path / "run").exists()


def test_model_names():
    assert looks_like_local_path("/models/bert") and looks_like_local_path("./bert") and looks_like_local_path("a/b/c")
    assert not looks_like_local_path("bert-base-uncased") and not looks_like_local_path("microsoft/deberta-v3-base")
    check_model_name("offline:minilm", "x")  # packaged: resolved later
    with pytest.raises(Exception, match="not in the local Hugging Face cache"):
        check_model_name("no-such-org/no-such-model-xyz", "where")  # HF_HUB_OFFLINE=1 in tests
