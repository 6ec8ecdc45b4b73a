import pytest
import yaml

from recplat.config import (apply_overrides, load_config, load_preset, parse_override, prepare_reference_file,
                            preset_file, preset_names, set_dotted)
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


def test_set_dotted_is_the_same_walk_with_typed_values():
    data = {"sources": [{"kind": "synthetic", "users": 10}], "kcore": {"user": 5}}
    out = set_dotted(data, {"sources.0.users": 99, "render.families": ["llmrec"], "name": "1e-4"})
    assert out == apply_overrides(data, ["sources.0.users=99", "render.families=[llmrec]"]) | {"name": "1e-4"}
    assert data["sources"][0]["users"] == 10
    with pytest.raises(ConfigError, match="kcore.user.x: kcore.user.x: its parent is a value"):
        set_dotted(data, {"kcore.user.x": 1})


def test_every_preset_validates():
    assert "ml100k" in preset_names() and "prepare" not in preset_names()  # prepare.yaml: the reference
    for name in preset_names():
        cfg = load_config(PrepareConfig, preset_file(name))
        assert cfg.sources
        assert load_preset(name) == load_preset(name) and load_preset(name) is not load_preset(name)
    with pytest.raises(ConfigError, match="unknown preset 'nope'; choose one of cprec_cpt, ml100k"):
        preset_file("nope")


def _leaves(data, prefix=""):
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): data}


def test_the_defaults_file_lists_every_key_with_the_models_default():
    """data/defaults/prepare.yaml documents PrepareConfig: the same keys, each with the default a
    file that leaves it out gets (`sources` has no default: the file's is an example)."""
    text = prepare_reference_file().read_text(encoding="utf-8")
    written = yaml.safe_load(text)
    sources = written.pop("sources")
    defaults = PrepareConfig(sources=sources).model_dump(mode="json")
    del defaults["sources"]
    assert _leaves(written) == _leaves(defaults)
    # and so `--config` layers a file on exactly these values
    assert load_config(PrepareConfig, prepare_reference_file()) == PrepareConfig(sources=sources)
    for key in _leaves(defaults):  # every key is commented with its type and meaning
        assert f"{key.rsplit('.', 1)[-1]}:" in text, key


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
