"""Typed run configuration: one YAML recipe per run, any key overridable from the command line.

A recipe has one section per stage (``model``, ``prompts``, ``distill``, ``sft``, ``grpo``,
``eval``, and ``demo`` for ``qponder demo``). Each section is a dataclass; TRL's own options live in the ``trl`` mapping of the
``sft``/``grpo`` sections and are checked against ``trl.SFTConfig``/``trl.GRPOConfig``
without building them. A key that belongs to TRL may also be written directly in the
section (``--set grpo.num_generations=8``): it is routed to ``trl``.

Every problem in a recipe is collected and reported at once, each with its dotted key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import subprocess
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qponder.errors import QponderError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, but reading ``1e-4`` as a float (YAML 1.2), not a string."""


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


@dataclass
class DistillConfig:
    """Stage 1: teacher distillation into cold-start data."""

    teacher: str = "synthetic"  # openai | hf | synthetic
    base_url: str | None = None  # openai teacher: the endpoint, e.g. http://host:8000/v1
    model: str | None = None  # openai: served model name; hf: model path
    api_key_env: str = "OPENAI_API_KEY"
    mode: str = "blind"  # blind | guided
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
        if self.teacher not in {"openai", "hf", "synthetic"}:
            problems.append(f"distill.teacher: {self.teacher!r} is not openai|hf|synthetic")
        if self.mode not in {"blind", "guided"}:
            problems.append(f"distill.mode: {self.mode!r} is not blind|guided")
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

    kind: str = "gaussian"  # gaussian | laplace | threshold
    sigma: float = 0.5
    b: float = 0.5
    eps: float = 0.35

    def __post_init__(self) -> None:
        if self.kind not in {"gaussian", "laplace", "threshold"}:
            raise ConfigError(f"grpo.score.kind: {self.kind!r} is not gaussian|laplace|threshold")


@dataclass
class ConsistencyRewardConfig:
    """Reasoning-consistency reward: a frozen judge reads the reasoning alone."""

    judge: str = "policy"  # policy (frozen initial policy) | a model path | openai
    base_url: str | None = None  # judge == openai
    model: str | None = None  # judge == openai: served model name
    sigma: float = 0.5
    batch_size: int = 16


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
        known = {"format", "score", "consistency", "ranking"}
        unknown = sorted(set(self.rewards) - known)
        if unknown:
            raise ConfigError(f"grpo.rewards: unknown reward(s) {unknown}; known: {sorted(known)}")
        if not any(w for w in self.rewards.values()):
            raise ConfigError("grpo.rewards: every weight is 0; GRPO needs at least one reward")


@dataclass
class EvalConfig:
    """Evaluation and scoring."""

    datasets: list[str] = field(default_factory=list)  # NAME:PATH specs
    split: str | None = "test"
    backend: str = "hf"  # hf | vllm | openai
    batch_size: int = 8
    max_new_tokens: int = 512
    samples: int = 1  # k > 1: sampled answers, mean and std reported
    temperature: float = 1.0  # used only when samples > 1
    limit: int | None = None
    bootstrap: int = 1000  # bootstrap resamples for confidence intervals
    seed: int = 0


@dataclass
class TinyModelConfig:
    """Sizes of the tiny offline Qwen2.5-VL (:func:`qponder.models.tiny.build_tiny_model`)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    vision_hidden_size: int = 32
    vision_depth: int = 2
    vision_heads: int = 2
    vocab_size: int = 1024
    seed: int = 0
    # perception pretraining of the vision tower on the training images' low-level
    # statistics (qponder.models.pretext; no MOS); 0 steps = a random encoder
    pretext_steps: int = 0
    pretext_learning_rate: float = 1e-3
    pretext_batch_size: int = 32


@dataclass
class DemoConfig:
    """``qponder demo``: the data and model it builds, and how it runs the stages."""

    n_images: int = 1000  # synthetic images (70 % train, 10 % val, 20 % test)
    data_seed: int = 0
    kinds: list[str] | None = None  # distortion kinds of the synthetic data; None = all
    photo_share: float = 0.35  # photograph crops among the contents; 0 = procedural only
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    eval_limit: int | None = None  # test images scored per stage; None = the whole split
    parallel_sft: bool = True  # train the CoT and answer-only SFT side by side, a core each
    quick: list[str] = field(default_factory=list)  # --set overrides applied by --quick

    def __post_init__(self) -> None:
        problems = []
        if self.n_images < 20:
            problems.append("demo.n_images must be >= 20")
        if not 0.0 <= self.photo_share <= 1.0:
            problems.append("demo.photo_share must lie in [0, 1]")
        if self.eval_limit is not None and self.eval_limit < 3:
            problems.append("demo.eval_limit must be >= 3 (SRCC needs three images), or null")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class Recipe:
    """A whole run: one section per stage."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: dict[str, str] = field(default_factory=dict)  # overrides of qponder.prompts
    distill: DistillConfig = field(default_factory=DistillConfig)
    sft: SFTRunConfig = field(default_factory=SFTRunConfig)
    grpo: GRPORunConfig = field(default_factory=GRPORunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
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
    return parts, yaml_load(raw) if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.path=value`` overrides applied."""
    data = json.loads(json.dumps(data))  # deep copy of plain YAML data
    for item in overrides or []:
        parts, value = parse_override(item)
        node = data
        for p in parts[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {p!r} is not a section")
            node = nxt
        node[parts[-1]] = value
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


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


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
    names = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(set(data) - names):
        problems.append(f"{prefix}{key}: unknown key; known: {sorted(names)}")
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, tp = data[f.name], hints[f.name]
        if _is_dataclass_type(tp):
            if not isinstance(value, dict):
                problems.append(f"{prefix}{f.name}: expected a mapping, got {value!r}")
                continue
            kwargs[f.name] = build_dataclass(tp, value, f"{prefix}{f.name}.", problems)
        elif not _check_type(value, tp):
            problems.append(f"{prefix}{f.name}: {value!r} is not of type {tp}")
        else:
            kwargs[f.name] = float(value) if tp is float else value
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        problems.append(str(exc))
        return cls()


def resolve_recipe_path(name: str | os.PathLike) -> Path:
    """Find a recipe by path, or by name among the shipped ``configs/``."""
    path = Path(name)
    if path.is_file():
        return path
    for cand in (CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"recipe {str(name)!r} not found (neither a file nor in {CONFIG_DIR})")


def load_recipe(
    path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> Recipe:
    """Load a YAML recipe (or the defaults when ``path`` is None) and apply overrides.

    Args:
        path: A YAML file, or the name of a shipped recipe such as ``tiny-demo``.
        overrides: ``key.path=value`` strings, as given to ``--set``.

    Returns:
        The validated :class:`Recipe`.

    Raises:
        ConfigError: Listing every problem found, each with its dotted key.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        rp = resolve_recipe_path(path)
        source = str(rp)
        try:
            data = yaml_load(rp.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{rp}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{rp}: a recipe must be a mapping of sections")
    data = apply_overrides(data, overrides)
    problems: list[str] = []
    _route_trl_keys(data, problems)
    recipe = build_dataclass(Recipe, data, "", problems)
    if problems:
        lines = "\n  - ".join(problems)
        raise ConfigError(f"invalid recipe ({source}):\n  - {lines}")
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Return the recipe as plain data (for run_config.yaml)."""
    return dataclasses.asdict(recipe)


# --------------------------------------------------------------------------- run directory


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Versions of Python and the main libraries, the device, and the git commit."""
    from importlib import metadata

    versions = {}
    for pkg in (
        "qponder",
        "torch",
        "transformers",
        "trl",
        "peft",
        "accelerate",
        "datasets",
        "vllm",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git_commit(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a dependency
        info["cuda"] = False
    return info


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` through a temporary file, so a reader never sees half a file."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_run_files(run_dir: str | os.PathLike, config: Any, name: str = "run_config.yaml") -> None:
    """Write the resolved config (YAML or JSON by ``name``'s suffix) and environment.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    target = run_dir / name
    if target.suffix == ".json":
        write_json_atomic(target, data)
    else:
        write_text_atomic(target, yaml.safe_dump(data, sort_keys=False))
    write_json_atomic(run_dir / "environment.json", environment_info())
