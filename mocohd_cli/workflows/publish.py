"""`mocohd push` as a library: a run folder -> a Hugging Face Hub model repository.

What is uploaded (`stage`): motion.safetensors, the run's config.toml (and provenance.toml when
there is one), sample.gif (the run's latest sample) and README.md, a model card whose metadata holds
the backbone's name and sha256, the dataset, the schedule and the run's eval metrics. A motion file
records where its backbone checkpoint is; the uploaded copy records a reference another machine can
resolve (hf://, zoo:, example:; given with --backbone-ref or found from the local path), so
`mocohd sample --motion hf://OWNER/NAME/motion.safetensors` needs nothing else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..infra.errors import MocohdError
from ..infra.runs import RunDir, read_toml

CARD = "README.md"
SAMPLE = "sample.gif"
SCHEDULE_KEYS = ("mode", "preset", "iterations", "frames", "time_step", "video_frame_size", "batch_size",
                 "global_batch", "lr", "g_steps", "h_dim", "n_pca", "w_residual", "seed", "precision")
_EVAL = re.compile(r"eval at step (\d+): (\S+)=(\S+)")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Staged:
    files: dict[str, Path]  # path in the repository -> local file
    card: str
    backbone_ref: str | None


def eval_metrics(run: RunDir) -> dict[str, dict]:
    """{metric: {"value", "step"}} of the last evaluation of each metric in the run's log."""
    metrics: dict[str, dict] = {}
    if run.log.is_file():
        for line in run.log.read_text(encoding="utf-8", errors="replace").splitlines():
            found = _EVAL.search(line)
            if found:
                metrics[found.group(2)] = {"value": float(found.group(3)), "step": int(found.group(1))}
    return metrics


def latest_sample(run: RunDir) -> Path | None:
    """The sample video of the highest step (gif preferred, else mp4)."""
    def step(path: Path) -> int:
        digits = path.stem.rpartition("_")[2]
        return int(digits) if digits.isdigit() else -1

    for suffix in ("gif", "mp4"):
        found = sorted(run.samples.glob(f"step_*.{suffix}"), key=step)
        if found:
            return found[-1]
    return None


def _as_gif(video: Path, out: Path) -> Path:
    if video.suffix == ".gif":
        return video
    import imageio.v3 as iio

    from ..infra.tensorboard import gif_bytes

    frames = iio.imread(video, plugin="pyav")  # [T, H, W, 3] uint8
    meta = iio.immeta(video, plugin="pyav")
    out.write_bytes(gif_bytes(frames, float(meta.get("fps") or 8)))
    return out


def check_repo_id(repo_id: str) -> str:
    if not _REPO.match(repo_id):
        raise MocohdError(f"--repo {repo_id!r} is not OWNER/NAME", fix="e.g. --repo my-name/faces-motion")
    return repo_id


def model_card(repo_id: str, info: dict, config: dict, metrics: dict, *, backbone_ref: str | None,
               license: str, provenance: list[dict], has_sample: bool) -> str:
    """README.md: YAML metadata (huggingface_hub's ModelCardData) and the text."""
    from huggingface_hub import ModelCardData

    from .. import __version__

    dataset = Path(str(config.get("data") or "?")).name
    backbone = {"name": info.get("backbone_name") or info.get("backbone"), "spec": info.get("backbone"),
                "sha256": info.get("backbone_sha256"), "checkpoint": backbone_ref}
    schedule = {key: config[key] for key in SCHEDULE_KEYS if config.get(key) is not None}
    base = backbone_ref.split("/")[2:4] if backbone_ref and backbone_ref.startswith("hf://") else None
    meta = ModelCardData(
        library_name="mocohd", license=license,
        tags=["mocohd", "mocogan-hd", "video-generation", str(backbone["name"] or "backbone")],
        base_model="/".join(base) if base else None,
        mocohd={"version": info.get("version") or __version__, "backbone": backbone, "dataset": dataset,
                "schedule": schedule, "eval": metrics, "format": info.get("format")},
    )
    use = f"mocohd sample --motion hf://{repo_id}/motion.safetensors --num-videos 4 --format gif"
    lines = [f"---\n{meta.to_yaml()}\n---", f"# {repo_id.split('/')[1]}", "",
             "A MoCoGAN-HD motion model trained with [mocohd](https://pypi.org/project/mocohd/): an LSTM that walks "
             f"the latent space of the frozen image generator `{backbone['name']}`.", "", "## Use", "", "```bash",
             use, "```", ""]
    if backbone_ref:
        lines += [f"The backbone checkpoint is fetched from `{backbone_ref}`.", ""]
    else:
        lines += [f"The backbone checkpoint was a local file ({Path(str(info.get('backbone_checkpoint'))).name}, "
                  f"sha256 `{backbone['sha256']}`): pass it with `--checkpoint`.", ""]
    lines += ["## Backbone", "", "| name | spec | sha256 | checkpoint |", "| --- | --- | --- | --- |",
              f"| {backbone['name']} | {backbone['spec']} | `{backbone['sha256']}` | {backbone_ref or 'local file'} |",
              "", "## Training", "", f"Dataset: `{dataset}` ({config.get('mode', '?')}).", "",
              "| setting | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in schedule.items()], ""]
    lines += ["## Evaluation", ""]
    if metrics:
        lines += ["| metric | value | step |", "| --- | --- | --- |",
                  *[f"| {name} | {m['value']:.6g} | {m['step']} |" for name, m in metrics.items()], ""]
    else:
        lines += ["The run was not evaluated during training (`mocohd train --eval-every N --eval-metric NAME`).", ""]
    if has_sample:
        lines += ["## Sample", "", f"![videos sampled during training]({SAMPLE})", ""]
    if provenance:
        first = provenance[0]
        lines += ["## Provenance", "", f"mocohd {first.get('mocohd')}, torch {first.get('torch')}, CUDA "
                  f"{first.get('cuda') or 'none'}, device {first.get('device')}"
                  + (f", git commit `{first['git_commit']}`" if first.get("git_commit") else "")
                  + f"; {len(provenance)} start(s), see provenance.toml.", ""]
    return "\n".join(lines)


def stage(run_path: str | Path, staging: Path, repo_id: str, *, backbone_ref: str | None = None,
          license: str = "other") -> Staged:
    """Write what `push` uploads into `staging` (the run folder is left as it is)."""
    from ..infra.files import read_safetensors, write_safetensors
    from ..infra.hub import portable_reference
    from ..infra.provenance import PROVENANCE_FILE, read_provenance
    from ..models.motion import read_motion_info

    run = RunDir(run_path)
    if not run.motion.is_file():
        raise MocohdError("this run has no motion.safetensors (it has not finished)", path=run.path,
                          fix="push a finished run (see `mocohd train`), or wait for it to finish")
    if not run.config.is_file():
        raise MocohdError("this run has no config.toml", path=run.path, fix="push a run folder written by mocohd")
    info = read_motion_info(run.motion)
    ref = backbone_ref or portable_reference(info.get("backbone_checkpoint"))
    tensors, meta = read_safetensors(run.motion, what="motion model")
    if ref:  # the uploaded copy says where the backbone comes from; the local file is unchanged
        meta["backbone_checkpoint"] = ref
    files = {"motion.safetensors": write_safetensors(staging / "motion.safetensors", tensors, meta),
             "config.toml": run.config}
    if (run.path / PROVENANCE_FILE).is_file():
        files[PROVENANCE_FILE] = run.path / PROVENANCE_FILE
    sample = latest_sample(run)
    if sample is not None:
        files[SAMPLE] = _as_gif(sample, staging / SAMPLE)
    card = model_card(check_repo_id(repo_id), info, read_toml(run.config), eval_metrics(run), backbone_ref=ref,
                      license=license, provenance=read_provenance(run.path), has_sample=sample is not None)
    (staging / CARD).write_text(card, encoding="utf-8")
    files[CARD] = staging / CARD
    return Staged(files, card, ref)


def upload(staged: Staged, repo_id: str, *, private: bool, message: str) -> str:
    """Create the repository (if needed) and upload the staged files in one commit; returns its URL."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from ..infra.download import OFFLINE_ENVS, offline
    from ..infra.hub import hub_endpoint, hub_http_error

    if offline():
        raise MocohdError(f"pushing needs the network, and {' / '.join(OFFLINE_ENVS)} is set",
                          fix="unset the variable (or use --dry-run to see what would be uploaded)")
    api = HfApi(endpoint=hub_endpoint())
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                      for name, path in staged.files.items()]
        commit = api.create_commit(repo_id, operations=operations, commit_message=message, repo_type="model")
    except HfHubHTTPError as exc:
        raise hub_http_error(exc, f"the upload to {repo_id}", f"write to {repo_id.split('/')[0]}") from exc
    except OSError as exc:  # connection errors
        raise MocohdError(f"could not reach the Hub to push {repo_id} ({type(exc).__name__})",
                          fix="check the network (and HF_ENDPOINT if set)") from exc
    return getattr(commit, "commit_url", None) or f"{repo_id}"
