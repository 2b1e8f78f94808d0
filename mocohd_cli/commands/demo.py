"""`mocohd demo`: a local web page to play with a model (gradio, the `demo` extra; docs/demo.md)."""
from __future__ import annotations

import os
from pathlib import Path
import shutil
from typing import Optional

import typer

from ..app import PANEL_GENERATE, app
from ..data.labels import load_class_labels
from ..infra.console import console
from ..workflows.demo import DemoModels, DemoOutputs, DemoSession, require_gradio, resolve_model
from ..workflows.demo_app import launch, output_root, quiet_gradio_environment


@app.command("demo", rich_help_panel=PANEL_GENERATE)
def demo(
    model: Optional[str] = typer.Option(None, "--model", metavar="MODEL", help="The model the page starts with: example:NAME, a "
                                        "motion .safetensors, a run folder or hf://OWNER/REPO/PATH.",
                                        show_default="the first shipped example"),
    host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS", help="Address to serve on (0.0.0.0: every interface; "
                             "anyone who reaches it can use the page)."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                       help="Port (default: 7860, else the next free one)."),
    share: bool = typer.Option(False, "--share", help="Also open a public gradio.live link (off by default)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Folder for the page's results (kept).",
                                       show_default="a temporary folder, removed at exit"),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE",
                                          help="Class-name file for class names in the page."),
) -> None:
    """Serve an interactive page: generate videos from any model, or animate an uploaded image.

    Examples:

      mocohd demo

      mocohd demo --model example:sky --port 8000
    """
    root, temporary = output_root(out)
    # gradio's copies of uploads and results go beside the page's results: one folder to serve and to
    # remove (gradio reads the variable when it is imported)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(root).resolve() / "gradio"))
    quiet_gradio_environment()
    try:
        _serve(root, temporary, model=model, host=host, port=port, share=share, labels=labels)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _serve(root: Path, temporary: bool, *, model, host, port, share, labels) -> None:
    require_gradio()  # the extra's error before anything else
    if model is not None:
        resolve_model(model)  # a wrong --model stops here, not in the page
    if labels is not None:
        load_class_labels(labels)
    session = DemoSession(DemoOutputs(root), DemoModels(), labels=str(labels) if labels else None)
    console.print(f"results go to {session.outputs.root}" + (" (removed at exit)" if temporary else ""))
    launch(session, host=host, port=port, share=share, default_model=model)
