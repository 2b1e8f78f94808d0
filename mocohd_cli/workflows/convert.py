"""`mocohd convert` as a library: any backbone checkpoint -> mocohd's own .safetensors."""
from __future__ import annotations

from pathlib import Path

from ..infra.errors import MocohdError
from ..models.backbone import ImageGenerator, load_backbone


def convert_backbone(checkpoint: str | Path, out: str | Path,
                     backbone: str | None = None) -> tuple[Path, ImageGenerator]:
    """Load `checkpoint` (backbone inferred unless named) and write it as `out` (.safetensors):
    weights and architecture, with the source file's name and sha256 recorded."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix != ".safetensors":
        raise MocohdError("the output file must end in .safetensors", path=out, fix="pass --out NAME.safetensors")
    if out.exists() and out.resolve() == checkpoint.resolve():
        raise MocohdError("--out would overwrite the checkpoint being converted", path=out,
                          fix="choose another output file")
    model = load_backbone(backbone, checkpoint)
    save = getattr(model, "save_safetensors", None)
    if save is None:
        raise MocohdError(f"backbone {model.spec!r} cannot export to .safetensors (it has no save_safetensors method)",
                          path=checkpoint, fix="use the checkpoint as it is, or add save_safetensors to the plugin")
    return Path(save(out, source_sha256=model.checkpoint_sha256, source_name=checkpoint.name)), model
