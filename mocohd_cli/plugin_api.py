"""The public plugin API: everything a plugin of mocohd may import, in one module.

A plugin is a Python distribution that registers an image generator (entry-point group
`mocohd.backbones`), a command (`mocohd.commands`), a training objective or a loss term. It imports
from this module only; the rest of `mocohd_cli` is internal and may change between versions, while
the names below keep their meaning (tests/test_layout.py checks that the built-in plugins and the
example plugin import nothing else). docs/write_your_own_backbone.md walks through a backbone.

The names, by what they are for:

- **The backbone contract**: `ImageGenerator` (subclass it), `MocohdError` and `brief_keys` (one clear
  error naming the file and the fix), `PRECISIONS`, `autocast`, `resolve_device`.
- **Files**: `read_safetensors`, `write_safetensors`, `safetensors_metadata`, `read_small_text`,
  `sha256_of`; torch checkpoints only through `torch_load_safely` (tensors and plain containers), pickles
  only through `restricted_load`, `RestrictedUnpickler` / `PersistentRecord`, `looks_like_persistence_pickle`
  and `scan_torch_file` (no code runs).
- **Settings**: `setting` (a dataclass field with its help text), `settings_from_dict`, `require_positive`,
  and for checking what a file holds `Field`, `read_fields`, `check_value`.
- **Data and models**: `load_frames`, `frame_batch`, `load_class_labels`, `diff_augment`, the GAN losses
  `d_logistic_loss`, `g_nonsaturating_loss`, `r1_penalty`.
- **Training loops**: the engine (`Engine`, `Cadence`; a loop is a task object, see
  mocohd_cli/training/engine.py), run folders (`RunDir`, `new_run_path`, `run_folder`, `DEFAULT_RUNS_ROOT`),
  states (`load_state_parts`), resumed settings (`given_and_file`, `resumed_values`), `frames_fid_monitor`.
- **Objectives and loss terms of `mocohd train`**: `register_objective` with `Objective`, `register_term`
  with `Term`, `TermContext`, `Step`.
- **Commands**: `config_command`, `options_from`, `given_values`, `extra_option`, `threads_option`,
  `PANEL_TRAIN`, `console`, and for sample grids `sample_images`, `write_image_grid`.
"""
from __future__ import annotations

from .app import PANEL_TRAIN
from .commands.options import config_command, extra_option, given_values, options_from
from .data.frames import frame_batch, load_frames
from .data.labels import load_class_labels
from .evaluation.frames_fid import frames_fid_monitor
from .infra.console import console
from .infra.device import PRECISIONS, autocast, resolve_device
from .infra.errors import MocohdError, brief_keys
from .infra.files import (read_safetensors, read_small_text, safetensors_metadata, sha256_of, torch_load_safely,
                          write_safetensors)
from .infra.pickle_scan import UnboundedPickleError, scan_torch_file
from .infra.runs import DEFAULT_RUNS_ROOT, RunDir, new_run_path
from .infra.safe_pickle import (PersistentRecord, RestrictedUnpickler, UnsafePickleError, looks_like_persistence_pickle,
                                restricted_load)
from .infra.schema import Field, check_value, read_fields
from .infra.settings import require_positive, setting, settings_from_dict
from .infra.threads import threads_option
from .models.augment import diff_augment
from .models.backbone import ImageGenerator
from .models.losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from .training.engine import Cadence, Engine
from .training.objectives import register_objective
from .training.objectives.base import Objective
from .training.resume import given_and_file, load_state_parts, resumed_values, run_folder
from .training.terms import register_term
from .training.terms.base import Step, Term, TermContext
from .workflows.backbone_grid import sample_images, write_image_grid

__all__ = [
    # the backbone contract
    "ImageGenerator", "MocohdError", "brief_keys", "PRECISIONS", "autocast", "resolve_device",
    # files
    "read_safetensors", "write_safetensors", "safetensors_metadata", "read_small_text", "sha256_of",
    "torch_load_safely", "RestrictedUnpickler", "PersistentRecord", "UnsafePickleError", "UnboundedPickleError",
    "scan_torch_file", "restricted_load", "looks_like_persistence_pickle",
    # settings
    "setting", "settings_from_dict", "require_positive", "Field", "read_fields", "check_value",
    # data and models
    "load_frames", "frame_batch", "load_class_labels", "diff_augment", "d_logistic_loss", "g_nonsaturating_loss",
    "r1_penalty",
    # training loops
    "Engine", "Cadence", "RunDir", "new_run_path", "run_folder", "DEFAULT_RUNS_ROOT", "load_state_parts",
    "given_and_file", "resumed_values", "frames_fid_monitor",
    # objectives and loss terms
    "register_objective", "Objective", "register_term", "Term", "TermContext", "Step",
    # commands
    "config_command", "options_from", "given_values", "extra_option", "threads_option", "PANEL_TRAIN", "console",
    "sample_images", "write_image_grid",
]
