"""The changelog page: CHANGELOG.md at the repository's root, published as changelog.md of the site.

One file, read at build time, so the page and the file cannot differ. Its links must be absolute
(the file is read on GitHub too, where the site's relative paths do not exist).
"""
from __future__ import annotations

from pathlib import Path

PAGE = "changelog.md"


def on_files(files, config):  # mkdocs hook
    from mkdocs.structure.files import File

    source = Path(config["config_file_path"]).parent / "CHANGELOG.md"
    files.append(File.generated(config, PAGE, content=source.read_text(encoding="utf-8")))
    return files
