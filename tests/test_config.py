import pytest

from recplat.cli import _presets, preset_path
from recplat.config import apply_overrides, load_config, parse_override
from recplat.data.config import PrepareConfig
from recplat.errors import ConfigError


def test_parse_override_types():
    assert parse_override("kcore.user=5") == (["kcore", "user"], 5)
    assert parse_override("split.ratios=[3, 1, 1]") == (["split", "ratios"], [3, 1, 1])
    assert parse_override("strict=true") == (["strict"], True)
    assert parse_override("name=spiao") == (["name"], "spiao")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("kcore.user")


def test_overrides_nest_and_index_lists():
    data = {"sources": [{"kind": "synthetic", "users": 10}], "kcore": {"user": 5}}
    out = apply_overrides(data, ["sources.0.users=99", "kcore.item=3", "render.families=[llmrec]"])
    assert out == {
        "sources": [{"kind": "synthetic", "users": 99}],
        "kcore": {"user": 5, "item": 3},
        "render": {"families": ["llmrec"]},
    }
    assert data["sources"][0]["users"] == 10  # the input is not modified
    with pytest.raises(ConfigError, match="no such list entry"):
        apply_overrides(data, ["sources.3.users=1"])
    with pytest.raises(ConfigError, match="kcore.user.x: its parent is a value"):
        apply_overrides(data, ["kcore.user.x.y=1"])


def test_every_preset_validates():
    for name in _presets():
        cfg = load_config(PrepareConfig, preset_path(name))
        assert cfg.sources


def test_unknown_key_and_bad_value_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sources: [{kind: synthetic}]\nkcore: {usr: 3}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: kcore.usr: unknown key"):
        load_config(PrepareConfig, path)
    path.write_text("sources: [{kind: synthetic}]\nsplit: {method: random}\n")
    with pytest.raises(ConfigError, match=r"split.method: .*'leave_one_out' or 'user'.*got 'random'"):
        load_config(PrepareConfig, path)
    path.write_text("sources: [{kind: nosuch}]\n")
    with pytest.raises(ConfigError, match=r"sources.0"):
        load_config(PrepareConfig, path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(PrepareConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(PrepareConfig, bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(PrepareConfig, bad)
