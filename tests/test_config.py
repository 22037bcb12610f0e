import pytest

from dpd.config import build_config, load_yaml, parse_overrides
from dpd.errors import UserError


def test_overrides_nest_and_parse_numbers():
    layer = parse_overrides(
        ["distill.alpha=0.75", "distill.lr=1e-4", "algo_kwargs.policy_kwargs={net_arch: [8, 8]}", "distill.enabled=false"]
    )
    cfg = build_config(layer)
    assert cfg.distill.alpha == 0.75 and cfg.distill.lr == pytest.approx(1e-4)
    assert cfg.algo_kwargs["policy_kwargs"]["net_arch"] == [8, 8]
    assert cfg.distill.enabled is False


def test_later_layers_win():
    cfg = build_config({"peers": 3, "distill": {"alpha": 1.0, "batch": 64}}, {"distill": {"alpha": 2.0}})
    assert cfg.peers == 3 and cfg.distill.alpha == 2.0 and cfg.distill.batch == 64


def test_integral_floats_become_ints():
    assert build_config({"total_steps": 1e6}).total_steps == 1_000_000


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"distil": {}}, "unknown config key 'distil'"),
        ({"distill": {"alhpa": 1}}, "valid choices: distill.alpha"),
        ({"peers": "two"}, "peers: expected an integer"),
        ({"distill": {"enabled": "yes"}}, "expected true or false"),
        ({"distill": 3}, "distill: expected a mapping"),
        ({"total_steps": 1.5}, "expected an integer"),
    ],
)
def test_bad_keys_and_values(layer, message):
    with pytest.raises(UserError, match=message):
        build_config(layer)


def test_bad_override_syntax():
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["distill.alpha"])


def test_yaml_file_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("peers: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="mapping"):
        load_yaml(listing)


def test_distill_off_shorthand(tmp_path):
    config = tmp_path / "independent.yaml"
    config.write_text("peers: 2\ndistill: off\n")
    assert build_config(load_yaml(config)).distill.enabled is False
    assert build_config(parse_overrides(["distill=on"])).distill.enabled is True
