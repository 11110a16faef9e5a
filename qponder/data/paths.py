"""Finding label files and images inside a dataset folder as its authors distribute it.

Releases differ in letter case between their label files and their folders (``I01.BMP``
vs ``i01.bmp``, ``dst_imgs/awgn`` vs ``dst_imgs/AWGN``), so lookups fall back to a
case-insensitive match. Nothing here requires an image to exist: label-only folders load.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from qponder.errors import DatasetError


class CaseInsensitiveFS:
    """Resolves relative paths under a base folder, ignoring letter case when needed.

    Directory listings are cached, so resolving many names in one folder costs one listing.
    """

    def __init__(self) -> None:
        self._listings: dict[str, dict[str, str] | None] = {}

    def _listing(self, folder: str) -> dict[str, str] | None:
        if folder not in self._listings:
            try:
                names = os.listdir(folder)
            except OSError:
                self._listings[folder] = None
            else:
                self._listings[folder] = {n.lower(): n for n in names}
        return self._listings[folder]

    def find(self, base: Path, relative: str) -> Path | None:
        """Return the existing path matching ``base/relative`` ignoring case, or ``None``."""
        exact = base / relative
        if exact.exists():
            return exact
        current = str(base)
        for part in Path(relative).parts:
            if part in ("", "."):
                continue
            listing = self._listing(current)
            if listing is None or part.lower() not in listing:
                return None
            current = os.path.join(current, listing[part.lower()])
        return Path(current)


class ImageResolver:
    """Maps image names from a label file to absolute paths.

    Args:
        root: Dataset root.
        candidates: Image folders relative to ``root``, tried in order; the first that exists
            is the base (case-insensitive). With none existing, the first candidate is used
            (label-only folder).
        override: A folder given by the user (``--images``); it must exist.

    Raises:
        DatasetError: ``override`` does not exist.
    """

    def __init__(
        self, root: Path, candidates: Sequence[str] = (), override: str | Path | None = None
    ) -> None:
        self.fs = CaseInsensitiveFS()
        if override is not None:
            base = Path(override).expanduser()
            if not base.is_dir():
                raise DatasetError(f"image folder {base} does not exist")
            self.base = base.absolute()
            return
        self.base = root.absolute()
        for cand in candidates:
            found = self.fs.find(root, cand)
            if found is not None and found.is_dir():
                self.base = Path(os.path.normpath(found.absolute()))
                return
        if candidates:
            self.base = Path(os.path.normpath((root / candidates[0]).absolute()))

    def resolve(self, name: str, *, subdirs: Iterable[str] = ()) -> str:
        """Absolute path of an image name (``a/b.png``), found or not.

        Args:
            name: Path relative to the image base as written in the label file (``\\``
                separators are accepted); an absolute path is kept.
            subdirs: Further folders under the base to try when the name is not at the base.

        Returns:
            The existing file (matched ignoring case), else ``base/subdirs[0]/name`` (or
            ``base/name`` without ``subdirs``).
        """
        name = name.strip().replace("\\", "/")
        if os.path.isabs(name):
            return os.path.normpath(name)
        subdirs = list(subdirs)
        found = self.fs.find(self.base, name)
        if found is None:
            for sub in subdirs:
                found = self.fs.find(self.base, f"{sub}/{name}")
                if found is not None:
                    break
        if found is None:
            found = self.base / subdirs[0] / name if subdirs else self.base / name
        return os.path.normpath(found)


def find_file(root: Path, names: Sequence[str], *, depth: int = 2) -> Path | None:
    """Find the first of ``names`` in ``root`` or its sub-folders (case-insensitive).

    Args:
        root: Folder to search.
        names: File names (may contain one ``/``), in order of preference.
        depth: How many folder levels below ``root`` to search.

    Returns:
        The file, or ``None``.
    """
    fs = CaseInsensitiveFS()
    level = [root]
    for _ in range(depth + 1):
        for folder in level:
            for name in names:
                found = fs.find(folder, name)
                if found is not None and found.is_file():
                    return found
        level = sorted(
            p for folder in level for p in _subdirs(folder) if not p.name.startswith(".")
        )
    return None


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return []


def root_and_file(path: Path, names: Sequence[str], dataset: str) -> tuple[Path, Path]:
    """Split a spec path into the dataset root and its label file.

    Args:
        path: The dataset's root folder, or one of its label files.
        names: Label file names to look for under a root folder, in order of preference.
        dataset: Adapter name, for messages.

    Returns:
        ``(root, label_file)``; a label file given directly makes its folder the root.

    Raises:
        DatasetError: Nothing at ``path``, or no label file under the folder.
    """
    if path.is_file():
        return path.parent, path
    if not path.exists():
        raise DatasetError(f"{dataset}: {path} does not exist")
    found = find_file(path, names)
    if found is None:
        raise DatasetError(
            f"{dataset}: no label file ({', '.join(names)}) under {path}; "
            "point the spec at the dataset's root folder or at its label file"
        )
    return path, found
