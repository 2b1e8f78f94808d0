"""Class names for conditional backbones: `--class 207` or `--class "golden retriever"`.

A labels file is either text, one class per line (line k = class k; comma-separated synonyms
on a line, as in the usual ImageNet list "tench, Tinca tinca"), or JSON: a list of names, an
object {index: name(s)} or an object {name: index}.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..infra.errors import MocohdError
from ..infra.files import read_small_text


def _normalise(name: str) -> str:
    return " ".join(name.strip().lower().split())


def _entries_from_json(data: object, path: Path) -> list[tuple[int, str]]:
    if isinstance(data, list):
        return [(index, name) for index, names in enumerate(data)
                for name in ([names] if isinstance(names, str) else names)]
    if isinstance(data, dict):
        entries = []
        for key, value in data.items():
            if isinstance(value, int) and not isinstance(value, bool):  # {name: index}
                entries.append((value, key))
            elif str(key).lstrip("-").isdigit() and len(str(key)) < 10:  # {index: name or [names]}
                for name in [value] if isinstance(value, str) else value:
                    entries.append((int(key), str(name)))
            else:
                raise MocohdError(f"labels entry {key!r}: {value!r} is neither name->index nor index->name",
                                  path=path, fix='use {"0": "name", ...} or {"name": 0, ...}')
        return entries
    raise MocohdError("a JSON labels file must hold a list or an object", path=path)


def load_class_labels(path: str | Path) -> dict[str, int]:
    """Map every class name (lower-cased, spaces normalised) to its index.

    A name given to two different classes is ambiguous (ImageNet has two "crane"s) and maps
    to -1; `resolve_classes` then asks for the index instead.
    """
    path = Path(path)
    text = read_small_text(path, "labels file", fix="pass --labels with a UTF-8 text or JSON file of class names")
    if path.suffix.lower() == ".json":
        try:
            entries = _entries_from_json(json.loads(text), path)
        except (json.JSONDecodeError, TypeError) as exc:
            raise MocohdError(f"invalid JSON labels file ({exc})", path=path,
                              fix='use ["name0", "name1", ...] or {"0": "name0", ...}') from exc
    else:
        entries = [(index, name) for index, line in enumerate(text.splitlines()) for name in line.split(",")]
    labels: dict[str, int] = {}
    for index, name in entries:
        key = _normalise(name)
        if not key:
            continue
        labels[key] = index if labels.get(key, index) == index else -1
    if not labels:
        raise MocohdError("the labels file names no classes", path=path, fix="one class name per line")
    return labels


def resolve_classes(values: list[str] | None, labels_path: str | Path | None = None,
                    num_classes: int | None = None) -> list[int] | None:
    """`--class` values (indices or names) -> class indices; names need a labels file."""
    if not values:
        return None
    labels = load_class_labels(labels_path) if labels_path is not None else None
    indices = []
    for value in values:
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            if len(text) > 9:
                raise MocohdError(f"--class {text[:20]}...: no backbone has that many classes", fix="use a class index")
            index = int(text)
        elif labels is None:
            raise MocohdError(f"--class {text!r} is a name but no labels file was given",
                              fix="pass --labels FILE (one class name per line) or use class indices")
        else:
            index = labels.get(_normalise(text))
            if index is None:
                close = [name for name in labels if _normalise(text) in name][:5]
                raise MocohdError(f"unknown class name {text!r}", path=labels_path,
                                  fix=f"did you mean: {', '.join(close)}" if close else "check the spelling")
            if index == -1:
                raise MocohdError(f"class name {text!r} names several classes", path=labels_path,
                                  fix="pass the class index instead")
        if num_classes is not None and not 0 <= index < num_classes:
            raise MocohdError(f"class {index} is out of range", fix=f"use a class in 0..{num_classes - 1}")
        indices.append(index)
    return indices
