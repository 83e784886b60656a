"""Recipe schema: strict validation with every problem reported at once, overrides and grids.

A recipe is a YAML mapping with the sections below. Unknown or mistyped keys are errors that name the
key path and the allowed keys; ``data.options`` are checked against the options of the named data source
and, like the model's numeric settings, against their ranges (:data:`DATA_OPTIONS`, :data:`MODEL_RANGES`),
so a wrong value is reported before any data is loaded. All problems are collected into one
:class:`ConfigError`.

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
import math
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
from ..nn.readout import READOUT_MODES, Readout
from ..train.losses import DECODERS
from ..data.arrays import LAYOUTS
from ..data.audio import SCALES, SPIKE_MODES
from ..data.encoders import ENCODERS, NORMALIZATIONS
from ..data.events import ALIGNMENTS
from ..data.registry import SPLIT_NAMES, list_datasets
from ..data.xor import XOR_TASKS
from .sources import DATA_NAMES, STATIC_IMAGES

__all__ = [
    "ConfigError", "load_recipe", "validate", "apply_overrides", "expand_grid", "RECIPES_DIR", "list_recipes",
    "DATA_OPTIONS", "MODEL_RANGES", "data_source_options",
]

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


def _within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[Any], Optional[str]]:
    """A check that a number lies in the interval from ``low`` to ``high`` (each end open or closed)."""
    text = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(value) -> Optional[str]:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return None if above and below else f"must lie in {text}"

    return check


def _splits(value) -> Optional[str]:
    names = [value] if isinstance(value, str) else value
    return None if all(n in SPLIT_NAMES for n in names) else f"must name splits from {list(SPLIT_NAMES)}"


_NUMBER = (int, float)
_NONE = type(None)
_FRACTION = _within(0, 1, high_open=True)
_PROBABILITY = _within(0, 1)

# data.options, by option name (a name means the same in every source that has it). Which names a source
# accepts comes from the source itself (data_source_options); every option of every source has an entry.
DATA_OPTIONS: dict[str, Key] = {
    "root": Key((str, _NONE)), "path": Key((str, _NONE)), "cache_dir": Key((str, _NONE)),
    "dt_ms": Key(_NUMBER, check=_positive), "duration_ms": Key(_NUMBER + (_NONE,), check=_positive),
    "align": Key(str, check=_one_of(*ALIGNMENTS)), "pool": Key(int, check=_positive),
    "binary": Key(bool), "faithful": Key(bool), "cache": Key(bool), "progress": Key(bool),
    "valid_fraction": Key(_NUMBER, check=_FRACTION), "test_fraction": Key(_NUMBER, check=_FRACTION),
    "seed": Key(int, check=_non_negative), "permutation_seed": Key(int, check=_non_negative),
    "noise_hz": Key(_NUMBER, check=_non_negative), "noise_splits": Key((list, str), check=_splits),
    "channels": Key(int, check=_positive), "sample_rate": Key(int, check=_positive),
    "scale": Key(str, check=_one_of(*SCALES)), "spikes": Key(str, check=_one_of(*SPIKE_MODES)),
    "gain": Key(_NUMBER, check=_positive), "step_ms": Key(_NUMBER, check=_positive),
    "layout": Key(str, check=_one_of(*LAYOUTS)), "steps": Key((int, _NONE), check=_positive),
    "time_factor": Key(_NUMBER + (_NONE,), check=_positive), "normalize": Key(str, check=_one_of("auto", *NORMALIZATIONS)),
    "encoder": Key(str, check=_one_of(*ENCODERS)), "delta": Key(_NUMBER, check=_positive),
    "polarity": Key(str, check=_one_of("both", "up")),
    "pattern_steps": Key(int, check=_positive), "gap": Key(int, check=_positive),  # generated XOR tasks
    "low": Key(_NUMBER, check=_PROBABILITY), "high": Key(_NUMBER, check=_PROBABILITY), "noise": Key(_NUMBER, check=_PROBABILITY),
}

# Numeric and boolean model settings, by name, checked wherever the model kind accepts the name.
MODEL_RANGES: dict[str, Key] = {
    "branches": Key(int, check=_positive), "group_size": Key(int, check=_positive),
    "max_delay": Key(int, check=_positive), "delays_per_synapse": Key(int, check=_positive),  # K and Q of DCLS
    "dt": Key(_NUMBER, check=_positive), "threshold": Key(_NUMBER, check=_positive),
    "tau": Key(_NUMBER, check=_within(1, float("inf"), low_open=True)), "tau_in": Key(_NUMBER, check=_positive),
    "dropout": Key(_NUMBER, check=_FRACTION), "sparsity": Key(_NUMBER + (_NONE,), check=_within(0, 1, low_open=True)),
    "event_density": Key(_NUMBER + (_NONE,), check=_PROBABILITY),
    "tolerance": Key(_NUMBER, check=_within(0, 1, low_open=True, high_open=True)),
    "sigma": Key(_NUMBER + (_NONE,), check=_positive), "chunk_size": Key((int, _NONE), check=_positive),
    "weight_std": Key(_NUMBER, check=_non_negative), "slope_floor": Key(_NUMBER, check=_non_negative),
    "time_penalty": Key(_NUMBER, check=_non_negative), "time_penalty_scale": Key(_NUMBER, check=_positive),
    "silent_penalty": Key(_NUMBER, check=_non_negative), "seed": Key(int, check=_non_negative),
    "max_dw": Key(_NUMBER + (_NONE,), check=_positive), "t_max": Key(_NUMBER + (_NONE,)),
    **{name: Key(bool) for name in ("learn_alpha", "learn_beta", "learn_threshold", "bias", "detach_reset", "scale_input",
                                     "faithful", "sparse_backward", "batch_norm", "silent_zero")},
    # structured settings: only their shape is checked here, their content when the model is built
    "readout_options": Key((dict, _NONE)), "bump": Key((dict, _NONE)), "regularisers": Key(list),
    "surrogate": Key((str, dict)), "sigma_schedule": Key((bool, dict)),
}


# Where one model kind needs a narrower range than MODEL_RANGES (e.g. the TTFS loss's softmax temperature σ,
# which has no default there, unlike the delay kernel's σ).
KIND_RANGES: dict[str, dict[str, Key]] = {"ttfs": {"sigma": Key(_NUMBER, check=_positive)}}


def data_source_options(name: str) -> Optional[dict[str, Any]]:
    """``{option: default}`` that ``data.options`` may hold for the source ``name`` (``None``: unknown source)."""
    if name in XOR_TASKS:
        params = inspect.signature(XOR_TASKS[name]).parameters
        return {p: v.default for p, v in params.items() if p not in ("batch", "generator")}
    if name in STATIC_IMAGES:
        return {"seed": 0}
    return list_datasets().get(name)

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


def _check_value(path: str, key: Key, value, problems: list[str]) -> bool:
    """Whether ``value`` has the key's type and passes its check (else the problem is added)."""
    if isinstance(value, bool) and bool not in (key.types if isinstance(key.types, tuple) else (key.types,)):
        problems.append(f"{path}: expected {_type_name(key.types)}, got a boolean ({value})")
        return False
    if not isinstance(value, key.types):
        problems.append(f"{path}: expected {_type_name(key.types)}, got {type(value).__name__} ({value!r})")
        return False
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path}: expected a finite number, got {value}")
        return False
    if key.check is not None and value is not None:
        problem = key.check(value)
        if problem:
            problems.append(f"{path}: {problem} (got {value!r})")
            return False
    return True


def _unknown(keys) -> list:
    """Keys sorted for messages (YAML keys need not be strings, so sort by their text)."""
    return sorted(keys, key=str)


def _validate_section(path: str, schema: dict, section, problems: list[str]) -> dict:
    """The section with defaults filled in; its problems are added to ``problems``. A section that is not a
    mapping is reported once and replaced by its defaults, so later checks always see every key."""
    complete = isinstance(section, dict)
    if not complete:
        problems.append(f"{path}: expected a mapping, got {type(section).__name__}")
        section = {}
    out = {}
    for name in _unknown(set(section) - set(schema)):
        problems.append(f"{path}.{name}: unknown key; allowed keys: {sorted(schema)}")
    for name, key in schema.items():
        where = f"{path}.{name}" if path else name
        if isinstance(key, dict):
            out[name] = _validate_section(where, key, section.get(name, {}), problems)
        elif key is None:
            continue
        elif name in section:
            valid = _check_value(where, key, section[name], problems)
            # A wrong value is reported and replaced by the default, so later checks see well-typed values.
            out[name] = section[name] if valid or key.default is _REQUIRED else copy.deepcopy(key.default)
        elif key.default is _REQUIRED:
            if complete:
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
    _check_settings("model", model, _model_keys(kind), f"for kind {kind!r}", problems, {**MODEL_RANGES, **KIND_RANGES.get(kind, {})})
    hidden = model.get("hidden")
    if not (isinstance(hidden, list) and hidden and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden)):
        problems.append(f"model.hidden: expected a non-empty list of positive integers (got {hidden!r})")
    if "readout" in model and model["readout"] not in READOUT_MODES:
        problems.append(f"model.readout: must be one of {list(READOUT_MODES)} (got {model['readout']!r})")
    if isinstance(model.get("readout_options"), dict):
        mode = model.get("readout", "integrator")
        _check_settings("model.readout_options", model["readout_options"], _readout_keys(kind, mode),
                        f"for kind {kind!r} with readout {mode!r}", problems)
    return dict(model)


def _check_settings(path: str, settings: dict, allowed: set[str], context: str, problems: list[str],
                    ranges: dict[str, Key] = MODEL_RANGES) -> None:
    """Each key of ``settings`` is in ``allowed`` and, where ``ranges`` has it, in range."""
    for name in _unknown(set(settings) - allowed):
        problems.append(f"{path}.{name}: unknown key {context}; allowed keys: {sorted(allowed)}")
    for name in sorted(allowed & set(ranges) & set(settings)):
        _check_value(f"{path}.{name}", ranges[name], settings[name], problems)


def _readout_keys(kind: str, mode) -> set[str]:
    """Keys ``model.readout_options`` may hold: the delayed readout's delay options for ``delays``, else
    :class:`Readout` arguments (plus soma options for a spiking readout)."""
    if kind == "delays":
        return set(DELAY_OPTIONS)
    keys = set(inspect.signature(Readout.__init__).parameters) - {"self", "in_features", "out_features", "mode", "soma"}
    if mode == "spike_count":
        keys |= set(inspect.signature(Soma.__init__).parameters) - {"self", "neurons"}
    return keys


def _allows_null(key: Optional[Key]) -> bool:
    """Whether null is a meaningful value of the option (e.g. ``duration_ms: null``: per-sample lengths)."""
    return key is not None and isinstance(key.types, tuple) and type(None) in key.types


def _validate_data_options(data: dict, problems: list[str]) -> None:
    """``data.name`` is a known source and each of ``data.options`` is one of its options, in range."""
    name, options = data.get("name"), data.get("options")
    if not isinstance(name, str):
        return  # its type is reported by the schema
    accepted = data_source_options(name)
    if accepted is None:
        problems.append(f"data.name: unknown data source {name!r}; available: {DATA_NAMES}")
        return
    for key in _unknown(options or {}):
        where = f"data.options.{key}"
        if key not in accepted:
            problems.append(f"{where}: not an option of {name!r}; its options are {sorted(accepted)}")
        elif options[key] is None and accepted[key] is not None and not _allows_null(DATA_OPTIONS.get(key)):
            problems.append(f"{where}: {name!r} needs a value here, not null")
        elif key in DATA_OPTIONS:
            _check_value(where, DATA_OPTIONS[key], options[key], problems)


def validate(recipe, source: str = "recipe") -> dict:
    """Return the recipe with defaults filled in, or raise :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    if not isinstance(recipe, dict):
        raise ConfigError([f"the recipe must be a YAML mapping, got {type(recipe).__name__}"], source)
    out = _validate_section("", SCHEMA, recipe, problems)
    out["model"] = _validate_model(recipe.get("model", {}), problems) if "model" in recipe else {}
    if "model" not in recipe:
        problems.append("model: required section is missing")
    _validate_data_options(out["data"], problems)
    for path in out.get("grid", {}):
        values = out["grid"][path]
        if not isinstance(path, str):
            problems.append(f"grid.{path}: grid keys must be dotted key paths such as model.branches")
        elif not isinstance(values, list) or not values:
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
        if not isinstance(path, str) or not _path_exists(recipe, path):
            problems.append(f"{where}: no such key in the recipe schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) or spec["type"] not in SEARCH_TYPES:
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
        model = recipe.get("model")
        kind = model.get("kind") if isinstance(model, dict) else None
        return isinstance(kind, str) and kind in KINDS and rest.split(".")[0] in _model_keys(kind)
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


# yaml's own errors, a ValueError from a tag's constructor (e.g. an impossible !!timestamp), or nesting
# deeper than the parser's recursion allows.
_YAML_ERRORS = (yaml.YAMLError, ValueError, RecursionError)


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
        except _YAML_ERRORS as err:
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
    except UnicodeDecodeError as err:
        raise ConfigError([f"not UTF-8 text ({err})"], str(path)) from None
    except _YAML_ERRORS as err:
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
