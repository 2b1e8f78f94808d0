"""`mocohd push`: a training run -> a Hugging Face Hub model repository (mocohd_cli/workflows/publish.py)."""
from __future__ import annotations

from pathlib import Path
import tempfile
from typing import Optional

import typer

from ..app import PANEL_MODELS, app
from ..infra.console import console
from ..workflows.publish import check_repo_id, stage, upload


@app.command("push", rich_help_panel=PANEL_MODELS)
def push(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder (with motion.safetensors and config.toml)."),
    repo: str = typer.Option(..., "--repo", metavar="OWNER/NAME", help="Hub repository OWNER/NAME (created when missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repository private; an existing public "
                                 "repository is refused (nothing uploaded)."),
    backbone_ref: Optional[str] = typer.Option(None, "--backbone-ref", metavar="REF", help="Where others get the backbone "
                                               "checkpoint (hf://..., zoo:NAME, example:NAME); found from the "
                                               "run's local path when it came from the Hub, the zoo or the examples."),
    license: str = typer.Option("other", "--license", metavar="ID", help="Licence id for the model card (e.g. mit, apache-2.0); "
                                "mind the backbone's licence."),
    message: str = typer.Option("Upload mocohd motion model", "--message", "-m", metavar="TEXT", help="Commit message."),
    provenance: bool = typer.Option(False, "--provenance", help="Upload provenance.toml too (the command line, "
                                    "the platform, the git commit of each start)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the model card and the files, upload nothing."),
) -> None:
    """Upload a run's motion model, config.toml, a sample GIF and a model card to the Hugging Face Hub.

    Examples:

      mocohd push mocohd-runs/train-20260101-120000 --repo OWNER/NAME --dry-run

      mocohd push mocohd-runs/train-20260101-120000 --repo OWNER/NAME
    """
    check_repo_id(repo)
    with tempfile.TemporaryDirectory(prefix="mocohd-push-") as folder:
        staged = stage(run, Path(folder), repo, backbone_ref=backbone_ref, license=license, provenance=provenance)
        if dry_run:
            typer.echo(staged.card)
            for name, path in staged.files.items():
                console.print(f"would upload {name} ({path.stat().st_size} bytes)")
            for name, why in staged.left_out.items():
                console.print(f"would not upload {name} ({why})")
            console.print(f"visibility: {'private' if private else 'public'} when {repo} is created; an existing "
                          "repository keeps its own" + (" (a public one is refused)" if private else ""))
            return
        pushed = upload(staged, repo, private=private, message=message)
    console.print(f"pushed {', '.join(staged.files)} to {repo} ({'private' if pushed.private else 'public'}): "
                  f"{pushed.url}")
    if staged.backbone_ref is None:
        console.print("[yellow]note: the backbone checkpoint is a local file: others need it with --checkpoint "
                      "(upload it and push again with --backbone-ref hf://...)[/yellow]")
    console.print(f"sample it with: mocohd sample --motion hf://{repo}/motion.safetensors")
