"""The training loop: data, model, optimizer, epochs, evaluation, checkpoints, records.

One code path serves a single process and `torchrun` (DistributedDataParallel; the global batch is
split evenly over the processes; only rank 0 prints and writes). Every epoch ends with
`last.pth` (weights + everything an exact resume needs: optimizer, schedule step, epoch, each
process's RNG states, best accuracy, metric history) and, when val top-1 improved, `best.pth`
(weights + metrics); both written atomically through `save_checkpoint`, with the class names and
the model's preprocessing, so `eval` / `export` rebuild the model from the file alone.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from acmix_deploy.checkpoint import load_into, read_checkpoint, save_checkpoint
from acmix_deploy.errors import AcmixError
from acmix_deploy.nn.acmix_train import form_of, to_form
from acmix_deploy.preprocess import Preprocessing
from acmix_deploy.train import distributed as D
from acmix_deploy.train.config import TrainConfig, new_config, resumed_config
from acmix_deploy.train.data import (
    EpochSampler,
    EvalOnly,
    ImageFolder,
    SeededTrain,
    ShardSampler,
    TrainTransform,
    collate,
    find_classes,
    split_dir,
)
from acmix_deploy.train.report import plot_curves, write_metrics_csv
from acmix_deploy.train.schedule import WarmupCosine, make_optimizer

LAST, BEST, METRICS, CURVES = "last.pth", "best.pth", "metrics.csv", "curves.png"


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int  # epochs finished in total (including those before a resume)
    best_top1: float
    best_epoch: int
    history: list[dict[str, Any]]
    step_losses: list[float] = field(default_factory=list)  # this process, this call, in order
    seconds: float = 0.0
    train_images: int = 0
    val_images: int = 0
    corrupt_train: list[str] = field(default_factory=list)


@dataclass
class ResumeState:
    path: str
    state_dict: dict[str, torch.Tensor]
    train: dict[str, Any]


def prepare(options: dict[str, Any], resume: str | Path | None = None) -> tuple[TrainConfig, ResumeState | None]:
    """The run's recipe: from the options (fresh run) or from the checkpoint (`resume`)."""
    if resume is None:
        return new_config(options), None
    loaded = read_checkpoint(resume)
    state = loaded.meta.get("train")
    if not isinstance(state, dict) or "optimizer" not in state:
        raise AcmixError(
            f"{resume} holds no training state; only a run's last.pth can be resumed (best.pth and exported "
            "weights hold weights only)"
        )
    config = resumed_config(state["config"], options, resume)
    return config, ResumeState(str(resume), loaded.state_dict, state)


# -- RNG state (torch / CUDA / numpy / python), stored as plain tensors so weights_only can load it --
def _rng_state(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class _Quiet:
    """Console stand-in for processes other than rank 0 (and for library calls that want silence)."""

    def print(self, *args: Any, **kwargs: Any) -> None:
        pass


def _progress(console: Any, enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console if enabled else None,
        transient=True,
        disable=not enabled,
    )


def _amp_dtype(config: TrainConfig, device: torch.device, console: Any) -> torch.dtype | None:
    if not config.amp:
        return None
    if device.type != "cuda":
        console.print("[yellow]warning:[/] --amp needs a CUDA GPU; training in float32 on CPU")
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train(
    config: TrainConfig,
    resume: ResumeState | None = None,
    console: Any | None = None,
    show_progress: bool = True,
    stop_after: int | None = None,
    warn_console: Any | None = None,
) -> TrainResult:
    """Run (or continue) a training run; `stop_after` ends it after that many epochs in total, as an
    interruption would (the schedule still spans `config.epochs`). Warnings go to `warn_console`
    (default: `console` when one is given, else stderr)."""
    env = D.setup()
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, resume, env, console, show_progress, stop_after, warn_console)
    finally:
        torch.set_num_threads(threads)
        D.teardown(env)


def _check_run_outputs(out_dir: Path) -> None:
    """Every file the run will write: checked now, not after the first epoch (nothing created)."""
    from acmix_deploy.fileio import check_destination

    if out_dir.exists() and not out_dir.is_dir():
        raise AcmixError(f"-o {out_dir} is a file; give a folder for the run")
    for name in (LAST, BEST, METRICS, CURVES):
        check_destination(out_dir / name, "-o", create=False)


@dataclass
class _Data:
    train_ds: ImageFolder
    val_ds: ImageFolder
    sampler: EpochSampler
    train_loader: DataLoader
    val_loader: DataLoader
    steps_per_epoch: int


@dataclass
class _Optim:
    net: nn.Module  # the model as trained: DDP-wrapped and / or compiled
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosine
    scaler: torch.amp.GradScaler
    criterion: nn.Module


@dataclass
class _Standing:
    """Where the run stands: the next epoch, the best val top-1 so far, the metric rows."""

    start_epoch: int = 0
    best_top1: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Run:
    """Everything an epoch needs, set up once."""

    config: TrainConfig
    env: D.DistEnv
    out: Any  # the console on rank 0, _Quiet elsewhere
    warn: Any  # where warnings go (stderr from the CLI), _Quiet off rank 0
    out_dir: Path
    amp_dtype: torch.dtype | None
    classes: list[str]
    model: nn.Module
    data: _Data
    optim: _Optim


def _train(
    config: TrainConfig,
    resume: ResumeState | None,
    env: D.DistEnv,
    console: Any | None,
    show_progress: bool,
    stop_after: int | None,
    warn_console: Any | None = None,
) -> TrainResult:
    from rich.console import Console

    warn_console = warn_console or console or Console(soft_wrap=True, stderr=True)
    console = console or Console(soft_wrap=True)
    out = console if env.is_main else _Quiet()
    warn = warn_console if env.is_main else _Quiet()
    out_dir = _check_start(config, resume, env)
    amp_dtype = _amp_dtype(config, env.device, warn)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    train_root, val_root = split_dir(config.data, "train"), split_dir(config.data, "val")
    classes = _classes(config, resume, train_root)
    model, pre = _model(config, resume, classes, env.device)
    data = _data(config, env, pre, classes, train_root, val_root)
    optim = _optim(config, env, model, data.steps_per_epoch, amp_dtype)
    run = _Run(config, env, out, warn, out_dir, amp_dtype, classes, model, data, optim)
    state = _resume(run, resume) if resume is not None else _Standing()
    _say_start(run, pre)

    result = TrainResult(out_dir, state.start_epoch, state.best_top1, state.best_epoch, state.history,
                         train_images=len(data.train_ds), val_images=len(data.val_ds))
    end_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    started = time.perf_counter()
    progress = _progress(console, env.is_main and show_progress)
    corrupt_seen: set[int] = set()
    with progress:
        for epoch in range(state.start_epoch, end_epoch):
            _epoch(run, state, epoch, progress, corrupt_seen, result)
    result.best_top1, result.best_epoch, result.history = state.best_top1, state.best_epoch, state.history
    result.seconds = time.perf_counter() - started
    if env.is_main and result.epochs_done > state.start_epoch:
        out.print(
            f"best val top-1 {state.best_top1:.2f}% (epoch {state.best_epoch}); {result.seconds:.1f}s; wrote "
            f"{out_dir / LAST}, {out_dir / BEST}, {out_dir / METRICS}, {out_dir / CURVES}"
        )
    return result


def _check_start(config: TrainConfig, resume: ResumeState | None, env: D.DistEnv) -> Path:
    """The run folder (a new run never overwrites another) and a batch that splits over the processes."""
    out_dir = Path(config.out)
    if resume is None and (out_dir / LAST).exists():
        raise AcmixError(
            f"{out_dir} already holds a run ({LAST}); continue it with --resume {out_dir / LAST} or choose another -o"
        )
    if env.is_main:
        _check_run_outputs(out_dir)
    if config.batch_size % env.world:
        raise AcmixError(f"--batch-size {config.batch_size} is not divisible by the {env.world} processes")
    return out_dir


def _classes(config: TrainConfig, resume: ResumeState | None, train_root: Path) -> list[str]:
    """Class order = sorted train folder names; they must match --num-classes and a resumed run."""
    classes = find_classes(train_root)  # the folder names only; the dataset lists the images below
    given_classes = config.overrides.get("num_classes")
    if given_classes is not None and given_classes != len(classes):
        raise AcmixError(f"--num-classes {given_classes} but {train_root} has {len(classes)} class folders")
    if resume is not None:
        saved = resume.train.get("classes")
        if saved is not None and list(saved) != classes:
            raise AcmixError(f"{train_root} classes differ from the resumed run's classes {saved}")
    return classes


def _model(
    config: TrainConfig, resume: ResumeState | None, classes: list[str], device: torch.device
) -> tuple[nn.Module, Preprocessing]:
    """The registered model (resumed weights loaded) in the training form, on `device`, and its preprocessing."""
    from acmix_deploy.registry import create_model

    overrides = {k: v for k, v in config.overrides.items() if k != "num_classes"}
    overrides["num_classes"] = len(classes)
    if config.img_size is not None:
        overrides["img_size"] = config.img_size
    model = create_model(config.model, **overrides)
    if resume is not None:
        load_into(model, resume.state_dict, strict=True)
    to_form(model, config.form)  # same parameters and keys in either form; draws no random numbers
    pre = Preprocessing.from_card(model.card)
    model.to(device)
    return model, pre


def _data(
    config: TrainConfig, env: D.DistEnv, pre: Preprocessing, classes: list[str], train_root: Path, val_root: Path
) -> _Data:
    """Seeded training loader (this process's shard of each epoch) and the sharded val loader."""
    transform = TrainTransform(pre, scale=(config.min_scale, 1.0), hflip=config.hflip)
    train_ds = ImageFolder(train_root, SeededTrain(transform, config.seed), classes, substitute_corrupt=True)
    val_ds = ImageFolder(val_root, EvalOnly(pre), classes)
    per_rank = config.batch_size // env.world
    sampler = EpochSampler(len(train_ds), env.rank, env.world, config.seed)
    loader_kw = dict(num_workers=config.workers, collate_fn=collate, pin_memory=env.device.type == "cuda",
                     persistent_workers=config.workers > 0)
    train_loader = DataLoader(train_ds, batch_size=per_rank, sampler=sampler, drop_last=True,
                              generator=torch.Generator().manual_seed(config.seed), **loader_kw)
    val_loader = DataLoader(val_ds, batch_size=per_rank, sampler=ShardSampler(len(val_ds), env.rank, env.world),
                            **loader_kw)
    if len(train_loader) == 0:
        raise AcmixError(
            f"--batch-size {config.batch_size} is larger than the {len(train_ds)} training images"
            + (f" split over {env.world} processes" if env.distributed else "")
        )
    return _Data(train_ds, val_ds, sampler, train_loader, val_loader, len(train_loader))


def _optim(
    config: TrainConfig, env: D.DistEnv, model: nn.Module, steps_per_epoch: int, amp_dtype: torch.dtype | None
) -> _Optim:
    """DDP / compile wrapping, optimizer, warm-up + cosine schedule, loss scaler, loss."""
    net: nn.Module = model
    if env.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net, dynamic=False)  # one graph per map size (sizes never change in a run)
    optimizer = make_optimizer(model, config.opt, config.lr, config.weight_decay, config.momentum)
    schedule = WarmupCosine(
        optimizer, config.lr, config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch), config.min_lr
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return _Optim(net, optimizer, schedule, scaler, nn.CrossEntropyLoss(label_smoothing=config.label_smoothing))


def _resume(run: _Run, resume: ResumeState) -> _Standing:
    """Optimizer, schedule, scaler, RNG states and metric history of the saved run (checked against this one)."""
    st, optim, out, config = resume.train, run.optim, run.out, run.config
    optim.optimizer.load_state_dict(st["optimizer"])
    optim.schedule.load_state_dict(st["schedule"])
    if st.get("scaler"):
        optim.scaler.load_state_dict(st["scaler"])
    state = _Standing(int(st["epoch"]), float(st["best_top1"]), int(st["best_epoch"]), list(st["history"]))
    if st.get("steps_per_epoch") != run.data.steps_per_epoch:
        raise AcmixError(
            f"the resumed run had {st.get('steps_per_epoch')} steps per epoch, this data gives "
            f"{run.data.steps_per_epoch}: the training set changed"
        )
    rngs = st["rng"]
    if len(rngs) == run.env.world:
        _set_rng_state(rngs[run.env.rank], run.env.device)
    else:
        run.warn.print(
            f"[yellow]warning:[/] the run was saved with {len(rngs)} process(es), resumed with {run.env.world}: "
            "it continues, but not bit-exactly"
        )
        torch.manual_seed(config.seed + state.start_epoch)
    out.print(f"resuming {resume.path} after epoch {state.start_epoch}/{config.epochs}")
    saved = {k: st["config"].get(k, d) for k, d in (("form", "reference"), ("compile", False))}
    changed = [f"{k} {saved[k]} -> {getattr(config, k)}" for k in saved if saved[k] != getattr(config, k)]
    if changed:
        out.print(f"note: {', '.join(changed)}: the same function computed another way; the run continues "
                  "within rounding, not bit-exactly")
    if state.start_epoch >= config.epochs:
        out.print(f"the run already finished all {config.epochs} epochs; nothing to do")
    return state


def _say_start(run: _Run, pre: Preprocessing) -> None:
    config, env, model, amp_dtype = run.config, run.env, run.model, run.amp_dtype
    where = f"{env.device}" + (f" x {env.world} processes" if env.distributed else "") + f", {torch.get_num_threads()} threads"
    amp_note = f", amp {str(amp_dtype).removeprefix('torch.')}" if amp_dtype else ""
    if form_of(model) == "fast" or config.compile:
        amp_note += f", {form_of(model)} ACmix form" + (", compiled" if config.compile else "")
    run.out.print(
        f"training {config.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.3f}M params, "
        f"{pre.input_size} px) on {len(run.data.train_ds)} train / {len(run.data.val_ds)} val images, "
        f"{len(run.classes)} classes, {where}{amp_note}; {config.opt} lr {config.lr:g}, "
        f"batch {config.batch_size}, {config.epochs} epochs"
    )


def _epoch(run: _Run, state: _Standing, epoch: int, progress: Any, corrupt_seen: set[int], result: TrainResult) -> None:
    """One epoch: train steps, val metrics, checkpoints and records (rank 0), the epoch's line."""
    t0 = time.perf_counter()
    run.data.sampler.set_epoch(epoch)
    lr, sums = _train_steps(run, epoch, progress, corrupt_seen, result)
    loss_sum, correct, seen = D.all_sum(run.env, sums)
    D.sync_buffers(run.env, run.model)
    val = evaluate_loader(run.model, run.data.val_loader, run.env, run.amp_dtype)
    row = {
        "epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_acc": 100.0 * correct / seen,
        "val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"], "time_s": 0.0,
    }
    improved = row["val_top1"] > state.best_top1
    if improved:
        state.best_top1, state.best_epoch = row["val_top1"], epoch + 1
    rngs = D.gather_objects(run.env, _to_cpu(_rng_state(run.env.device)))
    row["time_s"] = time.perf_counter() - t0
    state.history.append(row)
    bad = sorted(set().union(*D.gather_objects(run.env, sorted(corrupt_seen))))
    _save_epoch(run, state, row, improved, rngs, int(val["count"]))
    _say_epoch(run, row, improved, epoch == state.start_epoch, int(val["skipped"]), bad)
    result.epochs_done = epoch + 1
    result.corrupt_train = [str(run.data.train_ds.samples[i][0]) for i in bad]


def _train_steps(
    run: _Run, epoch: int, progress: Any, corrupt_seen: set[int], result: TrainResult
) -> tuple[float, list[float]]:
    """The epoch's optimizer steps on this process's shard: (last lr, [loss sum, correct, seen])."""
    config, optim, device, amp_dtype = run.config, run.optim, run.env.device, run.amp_dtype
    task = progress.add_task(f"epoch {epoch + 1}/{config.epochs}", total=run.data.steps_per_epoch, info="")
    optim.net.train()
    loss_sum = correct = seen = 0.0
    lr = config.lr
    for step, batch in enumerate(run.data.train_loader):
        corrupt_seen.update(batch.corrupt)
        x = batch.images.to(device, non_blocking=True)
        y = batch.labels.to(device, non_blocking=True)
        lr = optim.schedule.apply()
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = optim.net(x)
            loss = optim.criterion(logits.float(), y)
        value = loss.item()
        if not math.isfinite(value):
            raise AcmixError(f"the loss became {value} at epoch {epoch + 1} step {step + 1} (lr {lr:.3g}); lower --lr")
        optim.optimizer.zero_grad(set_to_none=True)
        optim.scaler.scale(loss).backward()
        optim.scaler.step(optim.optimizer)
        optim.scaler.update()
        optim.schedule.advance()
        result.step_losses.append(value)
        n = y.numel()
        loss_sum += value * n
        correct += (logits.argmax(1) == y).sum().item()
        seen += n
        progress.update(task, advance=1, info=f"loss {loss_sum / seen:.4f} lr {lr:.3g}")
    progress.remove_task(task)
    return lr, [loss_sum, correct, seen]


def _save_epoch(run: _Run, state: _Standing, row: dict[str, Any], improved: bool, rngs: list, val_count: int) -> None:
    """Rank 0 writes; a failed write stops every process with the same one-line error."""
    error = None
    if run.env.is_main:
        try:
            _write_epoch(run.model, run.config, run.classes, run.out_dir, state.history, row, improved,
                         state.best_top1, state.best_epoch, run.optim.optimizer, run.optim.schedule,
                         run.optim.scaler, rngs, run.data.steps_per_epoch, val_count, len(run.data.train_ds))
        except AcmixError as exc:
            error = str(exc)
    error = D.broadcast_object(run.env, error)
    if error:
        raise AcmixError(error)


def _say_epoch(run: _Run, row: dict[str, Any], improved: bool, first: bool, val_skipped: int, bad: list[int]) -> None:
    """The epoch's metrics line; on the first epoch of this process, what corrupt images were left out."""
    out, config = run.out, run.config
    out.print(
        f"epoch {row['epoch']:>3}/{config.epochs}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.2f}%  val loss {row['val_loss']:.4f} top-1 {row['val_top1']:.2f}% "
        f"top-5 {row['val_top5']:.2f}%  {row['time_s']:.1f}s" + ("  [green]best[/]" if improved else "")
    )
    if val_skipped and first:
        run.warn.print(f"[yellow]warning:[/] {val_skipped} corrupt validation image(s) left out of "
                  f"the val metrics (run `acmix-deploy eval` to list them)")
    if bad and first:
        names = ", ".join(str(run.data.train_ds.samples[i][0]) for i in bad[:5])
        run.warn.print(
            f"[yellow]warning:[/] {len(bad)} corrupt training image(s) replaced by their next readable "
            f"neighbour: {names}{' ...' if len(bad) > 5 else ''}"
        )


def _write_epoch(
    model: nn.Module,
    config: TrainConfig,
    classes: list[str],
    out_dir: Path,
    history: list[dict[str, Any]],
    row: dict[str, Any],
    improved: bool,
    best_top1: float,
    best_epoch: int,
    optimizer: torch.optim.Optimizer,
    schedule: WarmupCosine,
    scaler: torch.amp.GradScaler,
    rngs: list[dict[str, Any]],
    steps_per_epoch: int,
    val_count: int,
    train_count: int,
) -> None:
    """Rank 0: best.pth (if improved), last.pth, metrics.csv, curves.png; each one atomic."""
    data = {"train_images": train_count, "val_images": val_count, "data": str(config.data)}
    form = form_of(model)  # the block form the weights were trained with (either form loads them)
    if improved:
        save_checkpoint(model, out_dir / BEST, classes=classes,
                        extra={"metrics": dict(row), "epoch": row["epoch"], "dataset": data, "form": form})
    state = {
        "config": config.to_dict(),
        "classes": classes,
        "epoch": row["epoch"],
        "optimizer": _to_cpu(optimizer.state_dict()),
        "schedule": schedule.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "rng": rngs,
        "best_top1": best_top1,
        "best_epoch": best_epoch,
        "history": history,
        "steps_per_epoch": steps_per_epoch,
    }
    save_checkpoint(model, out_dir / LAST, classes=classes,
                    extra={"train": state, "metrics": dict(row), "epoch": row["epoch"], "dataset": data, "form": form})
    write_metrics_csv(history, out_dir / METRICS)
    plot_curves(history, out_dir / CURVES, title=f"{config.model} on {Path(config.data).name}")


@torch.no_grad()
def evaluate_loader(
    model: nn.Module, loader: DataLoader, env: D.DistEnv, amp_dtype: torch.dtype | None = None
) -> dict[str, float]:
    """Val loss (plain cross-entropy), top-1 and top-5 in percent, over all processes' shards."""
    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = count = skipped = 0.0
    for batch in loader:
        skipped += len(batch.corrupt)
        if batch.images.numel() == 0:
            continue
        x = batch.images.to(env.device, non_blocking=True)
        y = batch.labels.to(env.device, non_blocking=True)
        with torch.autocast(env.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices == y[:, None]
        top1 += hits[:, 0].sum().item()
        top5 += hits.any(1).sum().item()
        count += y.numel()
    model.train(was_training)
    loss_sum, top1, top5, count, skipped = D.all_sum(env, [loss_sum, top1, top5, count, skipped])
    if count == 0:
        raise AcmixError("no readable validation images")
    return {"loss": loss_sum / count, "top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count,
            "count": count, "skipped": skipped}
