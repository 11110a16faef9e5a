"""Typed run configuration: one YAML recipe per run, any key overridable from the command line.

A recipe has one section per stage (``model``, ``prompts``, ``distill``, ``sft``, ``grpo``,
``eval``, ``serve``). Each section is a dataclass; TRL's own options live in the ``trl``
mapping of the ``sft``/``grpo`` sections and are checked against
``trl.SFTConfig``/``trl.GRPOConfig`` without building them. A key that belongs to TRL may
also be written directly in the section (``--set grpo.num_generations=8``): it is routed to
``trl``. A client of the library may own a section of its own (:data:`EXTENSION_SECTIONS`:
``demo``, for ``qponder demo``): every command accepts it, and its owner validates it.

Every problem in a recipe is collected and reported at once, each with its dotted key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qponder.errors import QponderError
from qponder.rewards import REWARD_NAMES, SCORE_KINDS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # the shipped recipes, in the package


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but with YAML 1.2's numbers and booleans: ``1e-4`` is a float
    (not a string), and only true/false are booleans, so that ``--set
    sft.trl.save_strategy=no`` is the string TRL expects, not False (YAML 1.1 also read
    yes/no/on/off as booleans)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML safely, reading scientific notation such as ``1e-4`` as numbers."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class ConfigError(QponderError, ValueError):
    """A recipe or override is invalid; the message lists every problem with its key."""


# --------------------------------------------------------------------------- sections


@dataclass
class LoraSettings:
    """LoRA adapters through PEFT."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # "all-linear" also hits the vision MLP; list module names to restrict it.
    target_modules: str | list[str] = "all-linear"
    merge_on_save: bool = False  # write a merged full checkpoint to RUN/final


@dataclass
class ModelConfig:
    """Which model to load and how."""

    path: str | None = None  # a local folder or hub name; the CLI's --model overrides it
    dtype: str = "auto"  # auto = bf16 on a bf16-capable GPU, fp32 on CPU
    device_map: str | None = None
    attn_implementation: str | None = None  # e.g. "flash_attention_2", "sdpa"
    trust_remote_code: bool = False
    # image resize policy, shared by training and inference (processor min/max pixels)
    min_pixels: int | None = None
    max_pixels: int | None = None
    freeze_vision: bool = False
    gradient_checkpointing: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)

    def __post_init__(self) -> None:
        if self.dtype not in {"auto", "float32", "bfloat16", "float16"}:
            raise ConfigError(f"model.dtype: {self.dtype!r} is not auto|float32|bfloat16|float16")


# The teachers distillation can ask (qponder.distill builds them) and its two modes:
# blind (the teacher sees the image alone) and guided (it is also given the MOS).
TEACHERS: tuple[str, ...] = ("openai", "hf", "synthetic")
DISTILL_MODES: tuple[str, ...] = ("blind", "guided")


@dataclass
class DistillConfig:
    """Stage 1: teacher distillation into cold-start data."""

    teacher: str = "synthetic"  # one of TEACHERS
    base_url: str | None = None  # openai teacher: the endpoint, e.g. http://host:8000/v1
    model: str | None = None  # openai: served model name; hf: model path
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "blind"  # one of DISTILL_MODES
    tolerance: float = 0.5  # keep when |teacher score - MOS| <= tolerance (1..5 scale)
    samples: int = 1  # blind mode: best of K samples
    concurrency: int = 8
    timeout: float = 120.0  # seconds per request, in total, before it is retried
    max_retries: int = 5  # retries per request (429, 5xx, timeouts, malformed replies)
    retry_backoff: float = 1.0  # first backoff delay in seconds, doubled per retry
    max_side: int = 1024  # images are downscaled to this longest side before sending
    temperature: float = 0.7
    max_tokens: int = 1024
    batch_size: int = 4  # hf teacher
    error_rate: float = 0.1  # synthetic teacher: share of answers far from the MOS
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.teacher not in TEACHERS:
            problems.append(f"distill.teacher: {self.teacher!r} is not {'|'.join(TEACHERS)}")
        if self.mode not in DISTILL_MODES:
            problems.append(f"distill.mode: {self.mode!r} is not {'|'.join(DISTILL_MODES)}")
        if self.tolerance <= 0:
            problems.append("distill.tolerance must be > 0")
        if self.samples < 1:
            problems.append("distill.samples must be >= 1")
        if self.samples > 1 and self.temperature <= 0:
            problems.append(
                "distill.samples > 1 needs distill.temperature > 0 (else the samples are identical)"
            )
        if self.concurrency < 1:
            problems.append("distill.concurrency must be >= 1")
        if self.timeout <= 0:
            problems.append("distill.timeout must be > 0")
        if self.max_retries < 0 or self.retry_backoff < 0:
            problems.append("distill.max_retries and distill.retry_backoff must be >= 0")
        if self.max_side < 1 or self.max_tokens < 1 or self.batch_size < 1:
            problems.append("distill.max_side, max_tokens and batch_size must be >= 1")
        if not 0 <= self.error_rate <= 1:
            problems.append("distill.error_rate must lie in [0, 1]")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class ValidationConfig:
    """Validation during training: greedy-score a split, log SRCC/PLCC, keep the best."""

    dataset: str | None = None  # NAME:PATH; None disables validation
    split: str | None = "val"
    every_n_steps: int = 50
    limit: int | None = 64
    batch_size: int = 8
    max_new_tokens: int = 256
    keep_best: bool = True

    def __post_init__(self) -> None:
        problems = [
            f"validation.{name} must be >= 1"
            for name in ("every_n_steps", "batch_size", "max_new_tokens")
            if getattr(self, name) < 1
        ]
        if self.limit is not None and self.limit < 3:
            problems.append("validation.limit must be >= 3 (SRCC needs three images), or null")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class ScoreRewardConfig:
    """Score-accuracy reward (DESIGN §4)."""

    kind: str = "gaussian"  # one of rewards.SCORE_KINDS: gaussian | laplace | threshold
    sigma: float = 0.5
    b: float = 0.5
    eps: float = 0.35

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in SCORE_KINDS:
            problems.append(f"grpo.score.kind: {self.kind!r} is not {'|'.join(SCORE_KINDS)}")
        problems += [
            f"grpo.score.{name}: must be > 0, got {getattr(self, name)!r}"
            for name in ("sigma", "b", "eps")
            if getattr(self, name) <= 0
        ]
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class ConsistencyRewardConfig:
    """Reasoning-consistency reward: a frozen judge reads the reasoning alone."""

    judge: str = "policy"  # policy (frozen initial policy) | a model path | openai
    base_url: str | None = None  # judge == openai
    model: str | None = None  # judge == openai: served model name
    sigma: float = 0.5
    batch_size: int = 16

    def __post_init__(self) -> None:
        problems = []
        if not self.judge:
            problems.append("grpo.consistency.judge: give policy, openai or a model path")
        if self.judge == "openai":
            problems += [
                f"grpo.consistency.{k}: judge openai needs it"
                for k in ("base_url", "model")
                if not getattr(self, k)
            ]
        if self.sigma <= 0:
            problems.append(f"grpo.consistency.sigma: must be > 0, got {self.sigma!r}")
        if self.batch_size < 1:
            problems.append(f"grpo.consistency.batch_size: must be >= 1, got {self.batch_size}")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class SFTRunConfig:
    """Stage 1b: SFT on the cold-start data (Q-Ponder-CI)."""

    trl: dict[str, Any] = field(default_factory=dict)  # trl.SFTConfig options
    no_cot: bool = False  # train on the answer alone (the paper's ablation)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


@dataclass
class GRPORunConfig:
    """Stage 2: GRPO with the joint score + consistency reward (Q-Ponder)."""

    trl: dict[str, Any] = field(default_factory=dict)  # trl.GRPOConfig options
    # reward name -> weight; a weight of 0 drops the reward
    rewards: dict[str, float] = field(
        default_factory=lambda: {"format": 1.0, "score": 1.0, "consistency": 0.5}
    )
    score: ScoreRewardConfig = field(default_factory=ScoreRewardConfig)
    consistency: ConsistencyRewardConfig = field(default_factory=ConsistencyRewardConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        problems = []
        for name, weight in self.rewards.items():
            if name not in REWARD_NAMES:
                problems.append(f"grpo.rewards.{name}: unknown reward; known: {list(REWARD_NAMES)}")
            elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                problems.append(f"grpo.rewards.{name}: the weight must be a number >= 0")
        if not problems and not any(self.rewards.values()):
            problems.append("grpo.rewards: every weight is 0; GRPO needs at least one reward")
        if "reward_weights" in self.trl:
            problems.append(
                "grpo.trl.reward_weights: set the weights in grpo.rewards (name: weight), "
                "the one place they live"
            )
        if problems:
            raise ConfigError("; ".join(problems))


# The scoring backends of qponder.inference (eval, score, serve).
BACKENDS: tuple[str, ...] = ("hf", "vllm", "openai")
# What a bad label row does (qponder.data.labels.ON_ERROR): stops the load, or is left out
# and counted (eval; data inspect and convert).
ON_ERROR_POLICIES: tuple[str, ...] = ("raise", "skip")


@dataclass
class EvalConfig:
    """Evaluation and scoring."""

    datasets: list[str] = field(default_factory=list)  # NAME:PATH specs
    split: str | None = "test"  # train | val | test | all (every sample; also null)
    on_error: str = "raise"  # bad label rows: one of ON_ERROR_POLICIES
    backend: str = "hf"  # one of BACKENDS
    base_url: str | None = None  # backend openai: the endpoint, e.g. http://host:8000/v1
    batch_size: int = 8
    max_new_tokens: int = 512
    samples: int = 1  # k > 1: sampled answers, mean and std reported
    temperature: float = 1.0  # used only when samples > 1
    limit: int | None = None
    bootstrap: int = 1000  # bootstrap resamples for confidence intervals
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.backend not in BACKENDS:
            problems.append(f"eval.backend: {self.backend!r} is not {'|'.join(BACKENDS)}")
        if self.on_error not in ON_ERROR_POLICIES:
            problems.append(
                f"eval.on_error: {self.on_error!r} is not {'|'.join(ON_ERROR_POLICIES)}"
            )
        problems += [
            f"eval.{name}: must be >= 1, got {getattr(self, name)!r}"
            for name in ("batch_size", "max_new_tokens", "samples")
            if getattr(self, name) < 1
        ]
        if self.limit is not None and self.limit < 1:
            problems.append(f"eval.limit: must be >= 1 (or null for every image), got {self.limit}")
        if self.samples > 1 and self.temperature <= 0:
            problems.append("eval.temperature: must be > 0 when eval.samples > 1")
        if self.bootstrap < 0:
            problems.append(f"eval.bootstrap: must be >= 0, got {self.bootstrap}")
        if problems:
            raise ConfigError("; ".join(problems))

    def require_endpoint(self) -> None:
        """Refuse the ``openai`` backend without an endpoint (checked before any work)."""
        if self.backend == "openai" and not self.base_url:
            raise ConfigError(
                "eval.base_url: the openai backend needs an endpoint (--base-url "
                "http://host:8000/v1)"
            )


# A request may ask for at most this many sampled answers per image (qponder serve).
MAX_SAMPLES = 32


@dataclass
class ServeConfig:
    """``qponder serve``: where the server listens and what it refuses. How it scores (the
    backend, batch size, samples, decoding) is the ``eval`` section's."""

    host: str = "127.0.0.1"  # loopback: this machine only; 0.0.0.0 for every interface
    port: int = 8000  # 0: any free port
    max_wait_ms: float = 10.0  # longest wait for more images once one is waiting
    max_queue: int = 256  # most images waiting; more gets 503 with Retry-After
    max_images: int = 64  # most images in one request (more: 413)
    max_body_mb: float = 32.0  # largest request body (more: 413)
    api_key_env: str | None = None  # require 'Authorization: Bearer $NAME' when set
    access_log: bool = True  # one log line per request

    def __post_init__(self) -> None:
        problems = [
            f"serve.{name}: must be >= 1, got {getattr(self, name)!r}"
            for name in ("max_queue", "max_images")
            if getattr(self, name) < 1
        ]
        if self.max_body_mb <= 0:
            problems.append(f"serve.max_body_mb: must be > 0, got {self.max_body_mb!r}")
        if self.max_wait_ms < 0:
            problems.append(f"serve.max_wait_ms: must be >= 0, got {self.max_wait_ms!r}")
        if not 0 <= self.port <= 65535:
            problems.append(f"serve.port: must be in [0, 65535], got {self.port!r}")
        if not self.host:
            problems.append("serve.host: give an interface, e.g. 127.0.0.1")
        if self.api_key_env is not None and not self.api_key_env:
            problems.append("serve.api_key_env: give the name of an environment variable")
        if problems:
            raise ConfigError("; ".join(problems))


# The extension point: top-level sections owned by a client of the library rather than by a
# stage. Every command accepts them, kept as plain data in ``Recipe.extensions``, so that a
# recipe written for that client (the shipped tiny-demo) runs every other command too; the
# owner passes its schema to ``load_recipe(sections=...)`` to have it validated. Any other
# unknown top-level section is an error.
EXTENSION_SECTIONS: tuple[str, ...] = ("demo",)  # demo: qponder.demo.config.DemoConfig


@dataclass
class Recipe:
    """A whole run: one section per stage."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: dict[str, str] = field(default_factory=dict)  # overrides of qponder.prompts
    distill: DistillConfig = field(default_factory=DistillConfig)
    sft: SFTRunConfig = field(default_factory=SFTRunConfig)
    grpo: GRPORunConfig = field(default_factory=GRPORunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    # the EXTENSION_SECTIONS the recipe has: name -> plain mapping, or its owner's dataclass
    # when load_recipe was given the schema; written back as top-level sections
    extensions: dict[str, Any] = field(default_factory=dict, metadata={"from_yaml": False})
    seed: int = 42


# --------------------------------------------------------------------------- loading

_TRL_SECTIONS = {"sft": "SFTConfig", "grpo": "GRPOConfig"}


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-typed value.

    Example:
        >>> parse_override("grpo.trl.beta=0.04")
        (['grpo', 'trl', 'beta'], 0.04)
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. grpo.num_generations=8")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"--set {key.strip()}: the value {raw!r} is not valid YAML ({mark})"
        ) from None
    return parts, value


def _set_path(data: dict[str, Any], parts: list[str], value: Any, source: str) -> None:
    node = data
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{source}: {'.'.join(parts[: i + 1])} is not a section")
        node = nxt
    node[parts[-1]] = value


def apply_overrides(
    data: dict[str, Any],
    overrides: list[str] | None,
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.path=value`` overrides, then flags, applied.

    Args:
        data: The recipe as plain YAML data.
        overrides: ``--set`` strings; values are read as YAML.
        flags: Dotted key -> value of command-line flags (already typed, not YAML); they
            win over ``--set`` and the file.
    """
    data = json.loads(json.dumps(data))  # deep copy of plain YAML data
    for item in overrides or []:
        parts, value = parse_override(item)
        _set_path(data, parts, value, f"--set {item!r}")
    for key, value in (flags or {}).items():
        _set_path(data, key.split("."), value, f"flag for {key}")
    return data


def _trl_fields(section: str) -> set[str]:
    import trl  # deferred: importing TRL costs seconds

    cls = getattr(trl, _TRL_SECTIONS[section])
    return {f.name for f in dataclasses.fields(cls)}


def _route_trl_keys(data: dict[str, Any], problems: list[str]) -> None:
    """Move TRL options written directly in sft/grpo into their ``trl`` mapping, and check
    every ``trl`` key against TRL's dataclass."""
    for section in _TRL_SECTIONS:
        sec = data.get(section)
        if not isinstance(sec, dict):
            continue
        own = {
            f.name for f in dataclasses.fields(SFTRunConfig if section == "sft" else GRPORunConfig)
        }
        stray = [k for k in sec if k not in own]
        trl_keys = set(sec.get("trl") or {})
        if not stray and not trl_keys:
            continue
        allowed = _trl_fields(section)
        trl_opts = dict(sec.get("trl") or {})
        for k in stray:
            if k in allowed:
                trl_opts[k] = sec.pop(k)
            else:
                problems.append(f"{section}.{k}: unknown key (not a qponder or TRL option)")
                sec.pop(k)
        for k in trl_keys - allowed:
            problems.append(f"{section}.trl.{k}: not an option of trl.{_TRL_SECTIONS[section]}")
            trl_opts.pop(k, None)
        sec["trl"] = trl_opts


# TRL options whose values qponder checks before any model is loaded: key -> (kind, lowest,
# strict). TRL checks the rest when its config is built, also before the model loads.
_TRL_NUMBERS: dict[str, tuple[type, float, bool]] = {
    "max_steps": (int, 1, False),
    "learning_rate": (float, 0, True),
    "per_device_train_batch_size": (int, 1, False),
    "gradient_accumulation_steps": (int, 1, False),
    "num_train_epochs": (float, 0, True),
    "num_generations": (int, 2, False),
    "max_completion_length": (int, 1, False),
    "max_length": (int, 1, False),
    "logging_steps": (float, 0, True),
    "save_steps": (float, 0, True),
}


def _check_trl_numbers(data: dict[str, Any], problems: list[str]) -> None:
    for section in _TRL_SECTIONS:
        opts = (data.get(section) or {}).get("trl") or {}
        for key, (kind, lowest, strict) in _TRL_NUMBERS.items():
            if key not in opts or (key == "max_length" and opts[key] is None):
                continue  # absent, or max_length: null (no cut)
            value = opts[key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is int and number and float(value).is_integer():
                value = int(value)
            if not number or (kind is int and not isinstance(value, int)):
                what = "a whole number" if kind is int else "a number"
                problems.append(f"{section}.trl.{key}: {opts[key]!r} is not {what}")
            elif value < lowest or (strict and value == lowest):
                bound = f"> {lowest:g}" if strict else f">= {lowest:g}"
                problems.append(f"{section}.trl.{key}: must be {bound}, got {value!r}")


def _check_prompts(data: dict[str, Any], problems: list[str]) -> None:
    from qponder.prompts import load_prompts

    prompts = data.get("prompts") or {}
    if not isinstance(prompts, dict):
        problems.append("prompts: expected a mapping of prompt name -> text")
        return
    try:
        load_prompts(prompts)
    except ValueError as exc:
        problems.append(str(exc))


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def describe_type(tp: Any) -> str:
    """A field's type in a user's words: ``a whole number``, ``a number``, ``true or
    false``, ``a string``, ``a list``, ``a mapping``, ``null``, joined by "or" for a union
    (``int | None`` is ``a whole number or null``).

    Example:
        >>> describe_type(int | None)
        'a whole number or null'
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        words = dict.fromkeys(describe_type(a) for a in typing.get_args(tp))
        return " or ".join(words)
    if tp is type(None):
        return "null"
    if tp is list or origin is list:
        return "a list"
    if tp is dict or origin is dict:
        return "a mapping"
    return _TYPE_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _check_type(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def build_dataclass(
    cls: type, data: dict[str, Any] | None, prefix: str, problems: list[str]
) -> Any:
    """Build ``cls`` from a mapping, recursing into nested dataclasses.

    Problems (unknown keys, wrong types, failed validation) are appended to ``problems``
    with their dotted key; the defaults stand in for bad values so that checking goes on.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    # a field marked from_yaml=False (Recipe.extensions) is filled by the loader, not a key
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("from_yaml", True)]
    names = {f.name for f in fields}
    known = sorted(names | set(EXTENSION_SECTIONS)) if cls is Recipe else sorted(names)
    for key in sorted(set(data) - names):
        problems.append(f"{prefix}{key}: unknown key; known: {known}")
    for f in fields:
        if f.name not in data:
            continue
        value, tp = data[f.name], hints[f.name]
        if _is_dataclass_type(tp):
            if not isinstance(value, dict):
                problems.append(f"{prefix}{f.name}: expected a mapping, got {value!r}")
                continue
            kwargs[f.name] = build_dataclass(tp, value, f"{prefix}{f.name}.", problems)
        elif not _check_type(value, tp):
            problems.append(f"{prefix}{f.name}: must be {describe_type(tp)}, got {value!r}")
        else:
            kwargs[f.name] = float(value) if tp is float else value
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        problems.append(str(exc))
        return cls()


def resolve_recipe_path(name: str | os.PathLike) -> Path:
    """Find a recipe by path, or by name among the recipes shipped in the package
    (``qponder/configs/``: ``tiny-demo``, ``qwen2.5-vl-7b-koniq``, ...), from any directory."""
    path = Path(name)
    if path.is_file():
        return path
    for cand in (CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"):
        if cand.is_file():
            return cand
    shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))) or "none"
    raise ConfigError(
        f"recipe {str(name)!r} not found: neither a file nor a shipped recipe ({shipped})"
    )


def _build_extensions(
    data: dict[str, Any], sections: Mapping[str, type], problems: list[str]
) -> dict[str, Any]:
    """Take the :data:`EXTENSION_SECTIONS` out of ``data``: each as plain data, or built into
    the dataclass ``sections`` gives for it (defaults when the recipe lacks it)."""
    unknown = sorted(set(sections) - set(EXTENSION_SECTIONS))
    if unknown:  # a programming error, not a user's: name the extension point to extend
        raise ValueError(f"{unknown}: not in config.EXTENSION_SECTIONS {EXTENSION_SECTIONS}")
    out: dict[str, Any] = {}
    for name in EXTENSION_SECTIONS:
        if name not in data and name not in sections:
            continue
        value = data.pop(name, {})
        if not isinstance(value, dict):
            problems.append(f"{name}: expected a mapping, got {value!r}")
            value = {}
        cls = sections.get(name)
        out[name] = build_dataclass(cls, value, f"{name}.", problems) if cls else value
    return out


FLAGS_SOURCE = "flags"  # what an error calls the values a command's own flags set
_PROBLEM_KEY = re.compile(r"^([A-Za-z_][\w-]*(?:\.[\w-]+)*)")


def _key_sources(
    data: dict[str, Any], file: str | None, overrides: list[str] | None, flags: dict[str, Any]
) -> dict[str, str]:
    """Dotted key -> where its value came from: ``file`` for every key of the file's
    ``data``, ``--set`` or :data:`FLAGS_SOURCE` for the keys they set (the later source
    wins, as in :func:`load_recipe`; a key set whole takes the place of what lies under it)."""
    sources: dict[str, str] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            sources[prefix + str(k)] = str(file)
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")

    if file is not None:
        walk(data, "")
    keys = [(".".join(parse_override(item)[0]), "--set") for item in overrides or []]
    for key, source in [*keys, *((k, FLAGS_SOURCE) for k in flags)]:
        for under in [k for k in sources if k.startswith(key + ".")]:
            del sources[under]
        sources[key] = source
    return sources


def _problem_sources(problems: list[str], sources: dict[str, str]) -> list[str]:
    """Where the values of ``problems`` came from (each problem starts with its dotted
    key): the source of that key, else of the keys set under it, else of the nearest
    section above it; in the order file, ``--set``, flags."""
    found: list[str] = []
    for problem in (part for text in problems for part in text.split("; ")):
        match = _PROBLEM_KEY.match(problem)
        if not match:
            continue
        key = match.group(1)
        # a TRL option written in its section (grpo.num_generations) is checked in trl
        names = [key, key.replace(".trl.", ".", 1)]
        exact = [sources[n] for n in names if n in sources]
        under = [v for k, v in sources.items() if any(k.startswith(n + ".") for n in names)]
        above = [sources[a] for a in _sections_above(key) if a in sources][:1]
        found += exact or under or above
    order = {"--set": 1, FLAGS_SOURCE: 2}
    return sorted(dict.fromkeys(found), key=lambda src: order.get(src, 0))


def _sections_above(key: str) -> list[str]:
    """``a.b.c`` -> ``["a.b", "a"]``: the sections a key lies in, nearest first."""
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def load_recipe(
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    sections: Mapping[str, type] | None = None,
) -> Recipe:
    """Load a YAML recipe (or the defaults when ``path`` is None), apply overrides and
    command-line flags, and validate the result. The one path from user input to a recipe.

    Precedence, lowest first: qponder's defaults, the YAML file, ``--set`` overrides, flags.

    Args:
        path: A YAML file, or the name of a shipped recipe such as ``tiny-demo``.
        overrides: ``key.path=value`` strings, as given to ``--set``.
        flags: Dotted key -> typed value, from a command's own flags (``--model`` ->
            ``model.path``); ``None`` values are left out.
        sections: Schemas of :data:`EXTENSION_SECTIONS` the caller owns, e.g.
            ``{"demo": DemoConfig}``: checked with the rest, in the same error, and kept
            built in ``recipe.extensions``. The sections without one are kept as plain data.

    Returns:
        The validated :class:`Recipe`.

    Raises:
        ConfigError: Listing every problem found on one line, each with its dotted key,
            after where the bad values came from: the recipe file, ``--set``, or ``flags``
            (``invalid recipe (--set): eval.batch_size: must be a whole number, got
            'zero'``).
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    data: dict[str, Any] = {}
    file = None
    if path is not None:
        rp = resolve_recipe_path(path)
        file = str(rp)
        try:
            data = yaml_load(rp.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{rp}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{rp}: a recipe must be a mapping of sections")
    sources = _key_sources(data, file, overrides, flags)
    data = apply_overrides(data, overrides, flags)
    problems: list[str] = []
    _route_trl_keys(data, problems)
    _check_trl_numbers(data, problems)
    _check_prompts(data, problems)
    section_problems: list[str] = []  # reported after the core sections', as in the file
    extensions = _build_extensions(data, sections or {}, section_problems)
    recipe = build_dataclass(Recipe, data, "", problems)
    problems += section_problems
    if problems:
        fallback = (
            [file]
            if file
            else [s for s, given in (("--set", overrides), (FLAGS_SOURCE, flags)) if given]
        )
        where = ", ".join(_problem_sources(problems, sources) or fallback or ["defaults"])
        raise ConfigError(f"invalid recipe ({where}): " + "; ".join(problems))
    recipe.extensions = extensions
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Return the recipe as plain data (for run_config.yaml), in the layout of a recipe file:
    the extension sections as top-level sections, so that the result loads again."""
    out: dict[str, Any] = {}
    for key, value in dataclasses.asdict(recipe).items():
        if key == "extensions":
            out.update(value)
        else:
            out[key] = value
    return out
