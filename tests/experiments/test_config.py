import pytest

from spikescale.experiments.config import ConfigError, apply_overrides, expand_grid, list_recipes, load_recipe, validate

MINIMAL = {"data": {"name": "delayed_xor"}, "model": {"kind": "dh_sfnn", "hidden": [16]}}


@pytest.mark.parametrize("name", sorted(list_recipes()))
def test_every_shipped_recipe_validates(name):
    recipe = load_recipe(name)
    assert recipe["name"] == name and recipe["description"]
    assert expand_grid(recipe)


def test_defaults_are_filled_in():
    recipe = validate(MINIMAL)
    assert recipe["train"]["lr"] == 0.01 and recipe["data"]["batch_size"] == 64 and recipe["seed"] == 0


def test_unknown_keys_name_the_key_and_the_allowed_ones():
    bad = {**MINIMAL, "trian": {}, "train": {"learning_rate": 0.1}}
    with pytest.raises(ConfigError) as err:
        validate(bad)
    message = str(err.value)
    assert "trian: unknown key; allowed keys:" in message
    assert "train.learning_rate: unknown key; allowed keys: [" in message and "'lr'" in message
    assert len(err.value.problems) == 2


def test_all_problems_are_reported_at_once():
    bad = {
        "data": {"name": "delayed_xor", "batch_size": -1},
        "model": {"kind": "dh_sfnn", "hidden": [], "branches": 0, "alpha_int": "large"},
        "train": {"lr": "fast", "decoder": "max", "faithful": "yes"},
        "seed": 1.5,
    }
    with pytest.raises(ConfigError) as err:
        validate(bad)
    text = "\n".join(err.value.problems)
    for fragment in ("data.batch_size: must be > 0", "model.hidden", "model.branches", "model.alpha_int: unknown key",
                     "train.lr: expected int or float", "train.decoder: must be one of", "train.faithful: expected bool",
                     "seed: expected int"):
        assert fragment in text
    assert len(err.value.problems) == 8


def test_non_mapping_recipe_and_missing_sections():
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        validate([1, 2])
    with pytest.raises(ConfigError, match="model: required section is missing"):
        validate({"data": {"name": "x"}})


def test_overrides_and_grid():
    recipe = apply_overrides(MINIMAL, ["train.lr=0.005", "model.alpha_init=[large, small]", "grid={seed: [0, 1], model.branches: [1, 2]}"])
    recipe = validate(recipe)
    assert recipe["train"]["lr"] == 0.005 and recipe["model"]["alpha_init"] == ["large", "small"]
    variants = expand_grid(recipe)
    assert [name for name, _ in variants] == ["seed=0,branches=1", "seed=0,branches=2", "seed=1,branches=1", "seed=1,branches=2"]
    assert variants[3][1]["seed"] == 1 and variants[3][1]["model"]["branches"] == 2
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides(MINIMAL, ["train.lr"])
    with pytest.raises(ConfigError, match="grid.model.nonsense: no such key"):
        validate(apply_overrides(MINIMAL, ["grid={model.nonsense: [1]}"]))


def test_recipe_lookup_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no recipe named 'nope'"):
        load_recipe("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_recipe(bad)
