"""Recipe schema: strict validation with every problem reported at once, overrides and grids.

A recipe is a YAML mapping with the sections below. Unknown or mistyped keys are errors that name the
key path and the allowed keys; all problems are collected into one :class:`ConfigError`.

.. code-block:: yaml

    name: xor-multiscale-dh2          # run folder name
    description: one line
    seed: 0
    data:  {name: multiscale_xor, batch_size: 500, batches_per_epoch: 100, eval_samples: 2000, options: {}}
    model: {kind: dh_sfnn, hidden: [16], branches: 2, mask: contiguous, alpha_init: [large, small], readout: linear}
    train: {epochs: 150, lr: 0.01, schedule: step, step_size: 50, gamma: 0.1, decoder: per_step}
    grid:  {seed: [0, 1, 2]}           # optional: cartesian product of dotted keys → one run each

``--set train.lr=0.005`` style overrides use dotted paths; values are parsed as YAML.
"""

from __future__ import annotations

import copy
import inspect
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
import yaml

from ..nn.base import Soma
from ..nn.builders import MODEL_KINDS, build_network
from ..nn.delays import _DELAY_OPTIONS as DELAY_OPTIONS
from ..nn.delays import build_delay_network
from ..train.ttfs_objective import MODEL_OPTIONS as TTFS_MODEL_OPTIONS
from ..train.ttfs_objective import OBJECTIVE_OPTIONS as TTFS_OBJECTIVE_OPTIONS
from ..train.objective import SequenceObjective
from ..train.ttfs_objective import build_ttfs
from ..nn.readout import READOUT_MODES
from ..train.losses import DECODERS

__all__ = ["ConfigError", "load_recipe", "validate", "apply_overrides", "expand_grid", "RECIPES_DIR", "list_recipes"]

RECIPES_DIR = Path(__file__).parent / "recipes"

_REQUIRED = object()


class ConfigError(ValueError):
    """One or more problems in a recipe; ``problems`` lists them, the message shows them all."""

    def __init__(self, problems: list[str], source: str = "recipe") -> None:
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Key:
    """A recipe key: accepted types, default (``_REQUIRED`` = must be given) and an optional check."""

    types: Union[type, tuple]
    default: Any = _REQUIRED
    check: Optional[Callable[[Any], Optional[str]]] = None


def _positive(value) -> Optional[str]:
    return None if value > 0 else "must be > 0"


def _non_negative(value) -> Optional[str]:
    return None if value >= 0 else "must be >= 0"


def _one_of(*choices) -> Callable[[Any], Optional[str]]:
    return lambda value: None if value in choices else f"must be one of {list(choices)}"


_NUMBER = (int, float)

SCHEMA: dict[str, Any] = {
    "name": Key(str, None),
    "description": Key(str, ""),
    "seed": Key(int, 0, _non_negative),
    "data": {
        "name": Key(str),
        "path": Key((str, type(None)), None),
        "batch_size": Key(int, 64, _positive),
        "eval_batch_size": Key((int, type(None)), None),
        "batches_per_epoch": Key(int, 100, _positive),
        "eval_samples": Key(int, 1000, _positive),
        "valid_fraction": Key(_NUMBER, 0.1, lambda v: None if 0 <= v < 1 else "must lie in [0, 1)"),
        "num_workers": Key(int, 0, _non_negative),
        "options": Key(dict, {}),
    },
    "model": None,  # validated against the model builder's signature (see _model_keys)
    "train": {
        "epochs": Key(int, 10, _positive),
        "optimizer": Key(str, "adam", _one_of("adam", "adamw")),
        "lr": Key(_NUMBER, 1e-2, _positive),
        "weight_decay": Key(_NUMBER, 0.0, _non_negative),
        "eps": Key(_NUMBER, 1e-8, _positive),
        "schedule": Key(str, "none", _one_of("none", "step", "cosine", "onecycle")),
        "step_size": Key(int, 1, _positive),
        "gamma": Key(_NUMBER, 0.1, _positive),
        "groups": Key(dict, {}),
        "clip_grad_norm": Key((int, float, type(None)), None),
        "decoder": Key(str, "sum_softmax", _one_of(*DECODERS)),
        "warmup": Key(int, 0, _non_negative),
        "faithful": Key(bool, False),
        "select_on": Key((str, type(None)), None, lambda v: None if v in (None, "valid", "test", "last") else "must be valid, test, last or null"),
        "nan_policy": Key(str, "stop", _one_of("stop", "skip")),
        "amp": Key(str, "none", _one_of("none", "bf16", "fp16")),
        "init_from": Key((str, type(None)), None),
        "trainable": Key(str, "all", _one_of("all", "timing")),
        "deterministic": Key(bool, False),
        "device": Key(str, "cpu"),
        "progress": Key(bool, True),
    },
    "report": {
        "plots": Key(bool, True),
        "raster_samples": Key(int, 4, _non_negative),
        "gradient_flow": Key(bool, True),
    },
    "grid": Key(dict, {}),
    "search": {
        "metric": Key(str, "valid_accuracy"),
        "direction": Key(str, "maximize", _one_of("maximize", "minimize")),
        "pruner": Key(str, "median", _one_of("median", "none")),
        "space": Key(dict, {}),
    },
}

SEARCH_TYPES = {"float": {"low", "high", "log"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}

_BUILDER_KEYS = {"kind", "hidden", "readout", "readout_options", "seed"}
KINDS = sorted(MODEL_KINDS) + ["ttfs"]


def _model_keys(kind: str) -> set[str]:
    """Keys a model section may hold for ``kind``: builder arguments, layer arguments, soma options.

    For ``ttfs`` the model section also holds the TTFS objective's options (``sigma``, ``regularisers``, …),
    because the objective belongs to the method (see :func:`~spikescale.train.ttfs_objective.build_ttfs`).
    """
    if kind == "ttfs":
        return {"kind", "hidden", "seed"} | (set(TTFS_MODEL_OPTIONS) - {"sizes"}) | set(TTFS_OBJECTIVE_OPTIONS)
    layer = MODEL_KINDS[kind]
    params = set(inspect.signature(layer.__init__).parameters) - {"self", "in_features", "out_features", "soma", "generator"}
    if kind == "delays":
        builder = set(inspect.signature(build_delay_network).parameters) - {"in_features", "hidden", "out_features", "options"}
        return _BUILDER_KEYS | (params - {"delay_options"}) | builder | (set(DELAY_OPTIONS) - {"kind"}) | {"delay_kind"}
    soma = set(inspect.signature(Soma.__init__).parameters) - {"self", "neurons"}
    return _BUILDER_KEYS | params | soma


def _type_name(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_value(path: str, key: Key, value, problems: list[str]) -> None:
    if isinstance(value, bool) and bool not in (key.types if isinstance(key.types, tuple) else (key.types,)):
        problems.append(f"{path}: expected {_type_name(key.types)}, got a boolean ({value})")
        return
    if not isinstance(value, key.types):
        problems.append(f"{path}: expected {_type_name(key.types)}, got {type(value).__name__} ({value!r})")
        return
    if key.check is not None and value is not None:
        problem = key.check(value)
        if problem:
            problems.append(f"{path}: {problem} (got {value!r})")


def _validate_section(path: str, schema: dict, section, problems: list[str]) -> dict:
    if not isinstance(section, dict):
        problems.append(f"{path}: expected a mapping, got {type(section).__name__}")
        return {}
    out = {}
    for name in sorted(set(section) - set(schema)):
        problems.append(f"{path}.{name}: unknown key; allowed keys: {sorted(schema)}")
    for name, key in schema.items():
        where = f"{path}.{name}" if path else name
        if isinstance(key, dict):
            out[name] = _validate_section(where, key, section.get(name, {}), problems)
        elif key is None:
            continue
        elif name in section:
            _check_value(where, key, section[name], problems)
            out[name] = section[name]
        elif key.default is _REQUIRED:
            problems.append(f"{where}: required key is missing")
        else:
            out[name] = copy.deepcopy(key.default)
    return out


def _validate_model(model, problems: list[str]) -> dict:
    if not isinstance(model, dict):
        problems.append(f"model: expected a mapping, got {type(model).__name__}")
        return {}
    kind = model.get("kind")
    if kind not in KINDS:
        problems.append(f"model.kind: must be one of {KINDS} (got {kind!r})")
        return dict(model)
    allowed = _model_keys(kind)
    for name in sorted(set(model) - allowed):
        problems.append(f"model.{name}: unknown key for kind {kind!r}; allowed keys: {sorted(allowed)}")
    hidden = model.get("hidden")
    if not (isinstance(hidden, list) and hidden and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden)):
        problems.append(f"model.hidden: expected a non-empty list of positive integers (got {hidden!r})")
    if "readout" in model and model["readout"] not in READOUT_MODES:
        problems.append(f"model.readout: must be one of {list(READOUT_MODES)} (got {model['readout']!r})")
    if "branches" in model and (not isinstance(model["branches"], int) or isinstance(model["branches"], bool) or model["branches"] < 1):
        problems.append(f"model.branches: expected an integer >= 1 (got {model['branches']!r})")
    return dict(model)


def validate(recipe, source: str = "recipe") -> dict:
    """Return the recipe with defaults filled in, or raise :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    if not isinstance(recipe, dict):
        raise ConfigError([f"the recipe must be a YAML mapping, got {type(recipe).__name__}"], source)
    out = _validate_section("", SCHEMA, recipe, problems)
    out["model"] = _validate_model(recipe.get("model", {}), problems) if "model" in recipe else {}
    if "model" not in recipe:
        problems.append("model: required section is missing")
    for path in out.get("grid", {}):
        values = out["grid"][path]
        if not isinstance(values, list) or not values:
            problems.append(f"grid.{path}: expected a non-empty list of values")
        elif not _path_exists(recipe, path):
            problems.append(f"grid.{path}: no such key in the recipe schema")
    _validate_space(recipe, out["search"]["space"], problems)
    if problems:
        raise ConfigError(problems, source)
    return out


def _validate_space(recipe: dict, space: dict, problems: list[str]) -> None:
    """Each ``search.space`` entry: a recipe key path and ``{type: float|int|categorical, ...}``."""
    for path, spec in space.items():
        where = f"search.space.{path}"
        if not _path_exists(recipe, path):
            problems.append(f"{where}: no such key in the recipe schema")
        if not isinstance(spec, dict) or spec.get("type") not in SEARCH_TYPES:
            problems.append(f"{where}: expected a mapping with type one of {sorted(SEARCH_TYPES)}")
            continue
        allowed = SEARCH_TYPES[spec["type"]]
        unknown = sorted(set(spec) - allowed - {"type"})
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown} for type {spec['type']}; allowed: {sorted(allowed)}")
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                problems.append(f"{where}.choices: expected a non-empty list")
        elif not all(isinstance(spec.get(k), (int, float)) and not isinstance(spec.get(k), bool) for k in ("low", "high")) or spec["low"] > spec["high"]:
            problems.append(f"{where}: needs numbers low <= high")


def _path_exists(recipe: dict, path: str) -> bool:
    head, _, rest = path.partition(".")
    if not rest:
        return head in SCHEMA and head not in ("grid", "search")
    if head == "model":
        kind = recipe.get("model", {}).get("kind")
        return kind in KINDS and rest.split(".")[0] in _model_keys(kind)
    section = SCHEMA.get(head)
    if not isinstance(section, dict):
        return False
    first = rest.split(".")[0]
    return first in section and (first == rest or section[first].types in (dict,))


def _step_into(node, key: str, path: str):
    """``node[key]`` for a mapping (created when missing) or a list (``key`` an index)."""
    if isinstance(node, list):
        if not key.isdigit() or int(key) >= len(node):
            raise ConfigError([f"{path}: {key} is not an index of a list of {len(node)} entries"], "override")
        return int(key)
    if not isinstance(node, dict):
        raise ConfigError([f"{path}: cannot go into {type(node).__name__} at {key!r}"], "override")
    node.setdefault(key, {})
    return key


def set_path(recipe: dict, path: str, value) -> None:
    """Set ``recipe[a][b]... = value`` for ``path = "a.b..."``; mappings are created on the way, and a
    numeric part indexes a list (``model.regularisers.0.gamma``)."""
    keys = path.split(".")
    node = recipe
    for key in keys[:-1]:
        node = node[_step_into(node, key, path)]
    if isinstance(node, list):
        node[_step_into(node, keys[-1], path)] = value
    elif isinstance(node, dict):
        node[keys[-1]] = value
    else:
        raise ConfigError([f"{path}: cannot set a key inside {type(node).__name__}"], "override")


def apply_overrides(recipe: dict, overrides: list[str]) -> dict:
    """Apply ``["a.b=value", ...]`` (values parsed as YAML) to a copy of ``recipe``."""
    recipe = copy.deepcopy(recipe)
    problems = []
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path:
            problems.append(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.lr=0.005")
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problems.append(f"--set {item!r}: value is not valid YAML ({err})")
            continue
        set_path(recipe, path.strip(), value)
    if problems:
        raise ConfigError(problems, "overrides")
    return recipe


def expand_grid(recipe: dict) -> list[tuple[str, dict]]:
    """``[(variant_name, recipe), ...]``: one entry per combination of the grid (just the recipe if none)."""
    grid = recipe.get("grid") or {}
    if not grid:
        return [("", recipe)]
    paths = list(grid)
    variants = []
    for values in itertools.product(*(grid[p] for p in paths)):
        variant = copy.deepcopy(recipe)
        variant["grid"] = {}
        for path, value in zip(paths, values):
            set_path(variant, path, value)
        label = ",".join(f"{_short(p)}={_label(v)}" for p, v in zip(paths, values))
        variants.append((label, variant))
    return variants


def _short(path: str) -> str:
    """The last non-numeric part of a dotted path (``model.regularisers.0.gamma`` → ``gamma``)."""
    return next(part for part in reversed(path.split(".")) if not part.isdigit())


def _label(value) -> str:
    if isinstance(value, list):
        return "-".join(_label(v) for v in value)
    return str(value)


def list_recipes() -> dict[str, str]:
    """Names and descriptions of the recipes shipped with the package."""
    out = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        out[path.stem] = data.get("description", "") if isinstance(data, dict) else ""
    return out


def load_recipe(name_or_path: Union[str, Path], overrides: Optional[list[str]] = None) -> dict:
    """Load a shipped recipe by name or a YAML file by path, apply overrides and validate."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = RECIPES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise FileNotFoundError(
                f"no recipe named {str(name_or_path)!r}; shipped recipes: {sorted(list_recipes())} (or give a path to a YAML file)"
            )
    if not path.is_file():
        raise FileNotFoundError(f"recipe file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            recipe = yaml.safe_load(handle)
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {err}"], str(path)) from None
    if not isinstance(recipe, dict):
        raise ConfigError([f"the recipe must be a YAML mapping, got {type(recipe).__name__}"], str(path))
    recipe = apply_overrides(recipe, overrides or [])
    recipe.setdefault("name", path.stem)
    return validate(recipe, str(path))


def build_model_from_recipe(recipe: dict, in_features: int, out_features: int):
    """``(model, objective)`` a validated recipe describes (seeded by the recipe seed unless ``model.seed``)."""
    options = dict(recipe["model"])
    kind = options.pop("kind")
    hidden = options.pop("hidden")
    seed = options.pop("seed", recipe["seed"])
    if kind == "ttfs":
        torch.manual_seed(seed)
        return build_ttfs({**options, "sizes": [in_features, *hidden, out_features]})
    train = recipe["train"]
    model = build_network(kind, in_features, hidden, out_features, seed=seed, **options)
    return model, SequenceObjective(train["decoder"], warmup=train["warmup"], faithful=train["faithful"])
