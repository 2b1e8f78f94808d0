"""The page of `mocohd demo` (gradio): two tabs over the handlers of workflows/demo.py.

    Generate        a model, seed, videos, frames, fps, truncation, class, mode (independent, same
                    content, same motion, decomposition R x C) -> a grid video playing in the page,
                    the mp4 and the latents file to download. Also the API endpoint /generate (every
                    parameter has the page's default; it returns the video file).
    Animate image   an uploaded image, inverted and animated (`mocohd animate`) -> its video, the
                    upload beside the inverted frame, the files.

Bad input becomes a message in the page (gr.Error), never a traceback; the server keeps serving.
Nothing here touches the network: no analytics, system fonts, share off unless asked.
"""
from __future__ import annotations

from contextlib import contextmanager
import logging
import os
from pathlib import Path
import tempfile
from typing import Iterator

from . import demo as handlers
from ..infra.errors import MocohdError
from ..models.inversion import DEFAULT_STEPS
from .demo import DEFAULTS, LIMITS, MODES, DemoSession

log = logging.getLogger(__name__)

TITLE = "mocohd demo"
INTRO = ("**MoCoGAN-HD**: a trained motion generator walks the latent space of a frozen image generator. Pick a model "
         "(a shipped example, a motion file, a training run's folder or an `hf://` reference), a seed, and press "
         "Generate. Docs: `docs/demo.md`.")
MODEL_HELP = "example:NAME, a motion .safetensors, a run folder, or hf://OWNER/REPO/PATH"
MAX_UPLOAD = "25mb"  # an image to animate; gradio refuses larger uploads with a message
CLASS_HELP = "Conditional backbones only (BigGAN): class index, or several separated by commas"


def quiet_gradio_environment() -> None:
    """No analytics calls to anyone, set before gradio is imported (it reads them at import)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@contextmanager
def page_messages() -> Iterator[None]:
    """MocohdError -> its message in the page; any other failure -> one line in the page, the details in
    the server's log. Either way the server goes on serving."""
    import gradio as gr

    try:
        yield
    except gr.Error:
        raise
    except MocohdError as exc:
        raise gr.Error(exc.render(), print_exception=False) from None
    except Exception as exc:  # a bug, or a file that breaks a library: not the page's business to show
        log.exception("demo call failed")
        raise gr.Error(f"the call failed ({type(exc).__name__}); the server's log has the details",
                       print_exception=False) from None


def _progress(bar):
    return lambda fraction, what: bar(fraction, desc=what)


def build_demo(session: DemoSession, default_model: str | None = None):
    """The gradio Blocks of the page, bound to `session`."""
    handlers.require_gradio()
    quiet_gradio_environment()
    import gradio as gr

    examples = handlers.example_models()
    default_model = default_model or (examples[0] if examples else "")
    choices = examples + ([default_model] if default_model and default_model not in examples else [])

    def model_box(elem_id: str):
        return gr.Dropdown(choices, value=default_model, allow_custom_value=True, label="model", info=MODEL_HELP,
                           elem_id=elem_id)

    def seed_box(elem_id: str):
        # no minimum/maximum here: the handler's check words the message (gradio's logs a traceback)
        return gr.Number(DEFAULTS["seed"], precision=0, label=f"seed (0..{LIMITS['seed'][1]})", elem_id=elem_id)

    def slider(name: str, label: str, step: float = 1, **kwargs):
        return gr.Slider(*LIMITS[name], value=kwargs.pop("value", DEFAULTS.get(name)), step=step, label=label,
                         **kwargs)

    def generate(model, seed, num_videos, frames, fps, truncation, classes, mode, rows, cols,
                 progress=gr.Progress()):
        with page_messages():
            result = handlers.generate(session, model, seed, num_videos, frames, fps, truncation, classes, mode,
                                       rows, cols, progress=_progress(progress))
        return str(result.video), result

    def show_files(result):
        if result is None:  # the generation failed: its message is shown already
            return gr.update(), gr.update()
        return [str(result.video), str(result.latents)], result.message

    def animate(image, model, seed, frames, fps, steps, classes, progress=gr.Progress()):
        with page_messages():
            result = handlers.animate_image(session, image, model, seed, frames, fps, steps, classes,
                                            progress=_progress(progress))
        return str(result.video), str(result.compare), [str(result.video), str(result.latents)], result.message

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    model = model_box("model")
                    seed = seed_box("seed")
                    mode = gr.Radio(list(MODES), value=MODES[0], label="mode", elem_id="mode",
                                    info="same content: one content, N motions; same motion: one motion, N "
                                         "contents; decomposition: rows share a content, columns a motion")
                    num_videos = slider("num_videos", "videos", elem_id="num-videos")
                    with gr.Row():
                        rows = slider("rows", "decomposition rows")
                        cols = slider("cols", "decomposition columns")
                    frames = slider("frames", "frames")
                    fps = slider("fps", "fps (0: the model's)")
                    truncation = slider("truncation", "truncation", step=0.05)
                    classes = gr.Textbox("", label="class", info=CLASS_HELP, max_lines=1)
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column(scale=2):
                    video = gr.Video(label="videos", elem_id="video", autoplay=True, loop=True, height=420,
                                     interactive=False)
                    status = gr.Markdown(elem_id="status")
                    files = gr.File(label="downloads: the mp4 and the latents (replay: mocohd sample --latents)",
                                    file_count="multiple", interactive=False, elem_id="files")
            result = gr.State()
            go.click(generate, [model, seed, num_videos, frames, fps, truncation, classes, mode, rows, cols],
                     [video, result], api_name="generate", concurrency_limit=1).then(
                show_files, [result], [files, status], api_visibility="private")
        with gr.Tab("Animate an image"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.File(label="image (PNG, JPEG, ...)", file_types=["image"], elem_id="image")
                    a_model = model_box("animate-model")
                    a_seed = seed_box("animate-seed")
                    a_frames = slider("frames", "frames")
                    a_fps = slider("fps", "fps (0: the model's)")
                    steps = slider("steps", "inversion steps", value=DEFAULT_STEPS)
                    a_classes = gr.Textbox("", label="class", info=CLASS_HELP, max_lines=1)
                    a_go = gr.Button("Animate", variant="primary", elem_id="animate")
                with gr.Column(scale=2):
                    a_video = gr.Video(label="video", elem_id="animate-video", autoplay=True, loop=True, height=300,
                                       interactive=False)
                    compare = gr.Image(label="the image and its inversion", interactive=False, type="filepath")
                    a_status = gr.Markdown(elem_id="animate-status")
                    a_files = gr.File(label="downloads", file_count="multiple", interactive=False)
            a_go.click(animate, [image, a_model, a_seed, a_frames, a_fps, steps, a_classes],
                       [a_video, compare, a_files, a_status], api_name="animate", concurrency_limit=1)
    return page


def launch(session: DemoSession, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           default_model: str | None = None, block: bool = True):
    """Serve the page: only the session's outputs are served as files (and gradio's own uploads)."""
    page = build_demo(session, default_model)
    theme = _theme()
    page.queue(default_concurrency_limit=1)
    page.launch(server_name=host, server_port=port, share=share, allowed_paths=[str(session.outputs.root)],
                prevent_thread_lock=not block, show_error=False, theme=theme, footer_links=["api"],
                max_file_size=MAX_UPLOAD,
                quiet=not block, ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False)
    return page


def _theme():
    """gradio's default theme on the system's fonts (its default fetches web fonts)."""
    import gradio as gr

    fonts = ["ui-sans-serif", "system-ui", "sans-serif"]
    mono = ["ui-monospace", "monospace"]
    return gr.themes.Default(font=fonts, font_mono=mono)


def output_root(out: str | Path | None) -> tuple[Path, bool]:
    """The folder for the outputs and whether it is a temporary one (removed at exit)."""
    if out is not None:
        return Path(out), False
    return Path(tempfile.mkdtemp(prefix="mocohd-demo-")), True
