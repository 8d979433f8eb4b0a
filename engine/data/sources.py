"""Where images come from: a folder on the server, a zip upload, or a CSV manifest.

Every source is read, never modified. A source becomes a ``Listing``: the image files it holds,
each with its path relative to the source root, its class and (if the source has them) its split.
Scanning (``engine.data.scan``) turns a listing into per-image facts.

Paths a user types are only accepted inside the allowed data roots: ``$TAILLAB_DATA_ROOTS``
(``os.pathsep``-separated, plus ``<workspace>/datasets`` where zips are extracted) or, by default,
the workspace and the user's home folder.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple, Sequence

from engine import workspace
from engine.data.io import is_image_name

SPLITS = ("train", "val", "test")
# Folder / CSV spellings of the three splits.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
# Operating-system noise: skipped silently everywhere (folders, zips).
NOISE_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints"}

# Zip limits: an upload is refused before anything is extracted if it exceeds any of them.
MAX_ZIP_TOTAL_BYTES = 2 * 1024**3  # uncompressed size of all members
MAX_ZIP_FILES = 200_000
MAX_ZIP_RATIO = 100.0  # uncompressed / compressed, for the archive and for any member over 1 MiB
_RATIO_MIN_MEMBER = 1024**2  # tiny members may compress extremely well (a blank PNG): ignore them


class DataError(ValueError):
    """A data source we cannot use. The message says what is wrong and what to do about it."""


class DatasetError(DataError):
    """A data source that cannot be trained on (no classes, a class without training images, ...).
    A DataError, so one ``except DataError`` covers every data problem."""


# --- allowed roots -------------------------------------------------------------------------------

def allowed_roots() -> list[Path]:
    """Folders a user-given path must lie in: ``$TAILLAB_DATA_ROOTS`` (plus the workspace's
    ``datasets`` folder, where zips are extracted), or by default the workspace and the home folder."""
    env = os.environ.get("TAILLAB_DATA_ROOTS", "").strip()
    if env:
        # Imported zips live in the workspace: always usable.
        roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
        roots.append(workspace.home() / "datasets")
    else:
        roots = [workspace.home(), Path.home()]
    return [Path(os.path.realpath(r)) for r in roots]


def check_allowed(path: str | os.PathLike, roots: Sequence[str | os.PathLike] | None = None) -> Path:
    """The real (symlink-free) absolute path, if it lies inside an allowed root; else DataError."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    root_list = allowed_roots() if roots is None else [Path(os.path.realpath(r)) for r in roots]
    if not any(real == r or real.is_relative_to(r) for r in root_list):
        raise DataError(
            f"{path} is outside the allowed data folders ({', '.join(map(str, root_list))}). "
            "Move the data there, or add its folder to TAILLAB_DATA_ROOTS."
        )
    return real


# --- listings ------------------------------------------------------------------------------------

class Entry(NamedTuple):
    """One image file of a source."""

    rel: str  # path relative to the source root, '/'-separated
    label: str  # class name
    split: str = ""  # "train" | "val" | "test", or "" when the source has no splits


@dataclass
class Listing:
    """The image files of one source (nothing opened yet)."""

    root: Path  # absolute; Entry.rel is relative to it
    kind: str  # "folder" | "csv"
    entries: list[Entry]
    classes: list[str]  # sorted; includes classes whose folder holds no image file
    warnings: list[str] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (rel path, why) not images
    # Multi-task: a second label per image (a CSV column named in its header; engine.multitask).
    aux_name: str = ""  # the column's name, "" when there is no second label
    aux: dict[str, str] = field(default_factory=dict)  # Entry.rel -> second label

    @property
    def has_splits(self) -> bool:
        return any(e.split for e in self.entries)


def _is_noise(name: str) -> bool:
    return name in NOISE_NAMES or name.startswith("._") or name.startswith(".")


def _walk_class(root: Path, class_dir: Path, label: str, split: str,
                entries: list[Entry], ignored: list[tuple[str, str]]) -> int:
    """Add every image under class_dir (any depth) to entries; return how many."""
    n = 0
    root_s = str(root)
    stack = [(str(class_dir), os.path.relpath(class_dir, root_s).replace(os.sep, "/"))]
    while stack:
        d, rel_d = stack.pop()
        try:
            with os.scandir(d) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as e:
            ignored.append((rel_d, f"cannot list folder: {e.strerror}"))
            continue
        subdirs = []
        for item in items:
            name = item.name
            if _is_noise(name):
                continue
            rel = f"{rel_d}/{name}"
            if item.is_symlink():
                # A link may point anywhere on the server: follow it only if it stays in the source.
                target = os.path.realpath(item.path)
                if not (target == root_s or target.startswith(root_s + os.sep)):
                    ignored.append((rel, "symbolic link pointing outside the data folder"))
                    continue
                if os.path.isdir(target):
                    ignored.append((rel, "symbolic link to a folder (not followed)"))
                    continue
            if item.is_dir(follow_symlinks=False):
                subdirs.append((item.path, rel))
            elif is_image_name(name):
                entries.append(Entry(rel, label, split))
                n += 1
            else:
                ignored.append((rel, "not an image file name"))
        stack.extend(reversed(subdirs))
    return n


def _class_dirs(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if e.is_dir() and not _is_noise(e.name)), key=lambda e: e.name)


def list_folder(root: str | os.PathLike) -> Listing:
    """The images of a class-per-sub-folder tree.

    ``root/<class>/**/<image>``; or, when every top-level folder is a split name
    (train/val/test, also training/valid/validation/testing), ``root/<split>/<class>/**/<image>``.
    Images directly in the root, hidden files and OS noise (``__MACOSX``, ``.DS_Store``) are
    skipped. Raises DataError for a missing or empty folder.
    """
    root = Path(os.path.abspath(Path(root).expanduser()))
    if not root.exists():
        raise DataError(f"The folder {root} does not exist.")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder of class sub-folders.")
    entries: list[Entry] = []
    ignored: list[tuple[str, str]] = []
    warnings: list[str] = []
    top = _class_dirs(root)
    loose = sorted(e.name for e in os.scandir(root) if e.is_file() and not _is_noise(e.name))
    split_layout = bool(top) and all(d.name.lower() in SPLIT_ALIASES for d in top) and any(
        SPLIT_ALIASES[d.name.lower()] == "train" for d in top)
    classes: set[str] = set()
    empty: list[str] = []
    if split_layout:
        for sd in sorted(top, key=lambda d: (SPLITS.index(SPLIT_ALIASES[d.name.lower()]), d.name)):
            split = SPLIT_ALIASES[sd.name.lower()]
            for cd in _class_dirs(Path(sd.path)):
                classes.add(cd.name)
                if _walk_class(root, Path(cd.path), cd.name, split, entries, ignored) == 0:
                    empty.append(f"{sd.name}/{cd.name}")
    else:
        for cd in top:
            classes.add(cd.name)
            if _walk_class(root, Path(cd.path), cd.name, "", entries, ignored) == 0:
                empty.append(cd.name)
    for name in loose:
        ignored.append((name, "file outside any class folder"))
    if not entries:
        hint = ""
        if any(is_image_name(n) for n in loose):
            hint = " It holds images directly: put each class's images in a sub-folder named after the class."
        elif not top:
            hint = " It has no sub-folders: create one sub-folder per class."
        raise DataError(f"The folder {root} holds no images in class sub-folders.{hint}")
    if loose:
        warnings.append(f"{len(loose)} file(s) directly in the data folder are not in a class "
                        "folder and were ignored.")
    if empty:
        warnings.append(f"Class folder(s) without images: {_few(empty)}.")
    labels = sorted(classes)
    if len(labels) == 1:
        warnings.append(f"Only one class ({labels[0]}): training a classifier needs at least 2.")
    return Listing(root, "folder", entries, labels, warnings, ignored)


def _few(items: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


# Header names of the known CSV columns (case-insensitive). Any one other named column is a
# second label: a second head learns it (engine.multitask) and the column name is its task name.
CSV_PATH_NAMES = ("path", "file", "filename", "image")
CSV_LABEL_NAMES = ("label", "class")
CSV_SPLIT_NAMES = ("split", "subset")


def _csv_columns(header: list[str], csv_name: str) -> tuple[int, int, int | None, int | None, str]:
    """(path, label, split or None, second label or None, second label's name) column indices of
    a header row. The label is the column named label / class (else the second), the split the
    one named split / subset; one more named column is the second label."""
    names = [c.strip() for c in header]
    low = [n.lower() for n in names]
    label = next((i for i, n in enumerate(low) if n in CSV_LABEL_NAMES), 1 if len(low) > 1 else None)
    if label is None or label == 0:
        raise DataError(f"The header of {csv_name} ({','.join(names)}) names no label column: name the "
                        "columns path,label[,split][,<second label>].")
    split = next((i for i, n in enumerate(low) if n in CSV_SPLIT_NAMES), None)
    extra = [i for i, n in enumerate(names) if i not in (0, label, split) and n]
    if len(extra) > 1:
        raise DataError(
            f"The header of {csv_name} names {len(extra)} columns TailLab does not know "
            f"({', '.join(repr(names[i]) for i in extra)}): besides path, label and split it reads one "
            "more column, a second label that a second head learns. Keep one of them (or name the "
            "split column 'split').")
    aux = extra[0] if extra else None
    return 0, label, split, aux, names[aux] if aux is not None else ""


def read_csv_manifest(csv_path: str | os.PathLike) -> Listing:
    """The images of a CSV manifest: rows ``path,label[,split]``, paths relative to the CSV's folder.

    A header row (first cell ``path``, ``file``, ``filename`` or ``image``) is optional; with one,
    columns are found by name (label / class, split / subset) and one more named column is a
    second label for multi-task training (``path,label,split,attribute``: the task is called
    "attribute"). Every row needs a value there, and it needs at least two different values.
    Raises DataError, naming a few offending rows, for missing files, paths that leave the CSV's
    folder, empty labels, unknown splits, files listed twice and missing second labels.
    """
    csv_path = Path(os.path.abspath(Path(csv_path).expanduser()))
    if not csv_path.is_file():
        raise DataError(f"The CSV file {csv_path} does not exist.")
    root = csv_path.parent
    real_root = os.path.realpath(root)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{csv_path.name} is not UTF-8 text ({e}).") from e
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r)]
    ci_path, ci_label, ci_split, ci_aux, aux_name = 0, 1, 2, None, ""
    header = bool(rows and rows[0] and rows[0][0].strip().lower() in CSV_PATH_NAMES)
    if header:
        ci_path, ci_label, ci_split, ci_aux, aux_name = _csv_columns(rows[0], csv_path.name)
        rows = rows[1:]
    if not rows:
        raise DataError(f"{csv_path.name} lists no images. Expected rows of path,label[,split].")
    entries, missing, outside, bad, seen, dup, no_aux = [], [], [], [], set(), [], []
    aux: dict[str, str] = {}
    extra_cells = 0
    for lineno, row in enumerate(rows, start=1 + header):
        cells = [c.strip() for c in row]
        cell = lambda i: cells[i] if i is not None and i < len(cells) else ""  # noqa: E731
        if not cell(ci_path) or not cell(ci_label):
            need = "path,label[,split]" if not header else "a path and a label"
            bad.append(f"row {lineno}: {','.join(row)!r} (need {need})")
            continue
        if not header and len(cells) > 3 and any(cells[3:]):
            extra_cells += 1
        split = ""
        if cell(ci_split):
            split = SPLIT_ALIASES.get(cell(ci_split).lower(), "")
            if not split:
                bad.append(f"row {lineno}: unknown split {cell(ci_split)!r} (use train, val or test)")
                continue
        p = Path(cell(ci_path).replace("\\", "/"))
        full = p if p.is_absolute() else root / p
        real = os.path.realpath(full)
        if not (real.startswith(real_root + os.sep)):
            outside.append(cell(ci_path))
            continue
        if not os.path.isfile(real):
            missing.append(cell(ci_path))
            continue
        rel = os.path.relpath(os.path.abspath(full), root).replace(os.sep, "/")
        if rel.startswith("../"):  # an absolute path through a link into the folder
            outside.append(cell(ci_path))
            continue
        if rel in seen:
            dup.append(rel)
            continue
        seen.add(rel)
        if ci_aux is not None:
            if not cell(ci_aux):
                no_aux.append(f"row {lineno} ({cell(ci_path)})")
                continue
            aux[rel] = cell(ci_aux)
        entries.append(Entry(rel, cell(ci_label), split))
    problems = []
    if bad:
        problems.append(f"{len(bad)} malformed row(s): {_few(bad, 3)}")
    if outside:
        problems.append(f"{len(outside)} path(s) outside the CSV's folder {root}: {_few(outside)}")
    if missing:
        problems.append(f"{len(missing)} missing file(s): {_few(missing)}")
    if dup:
        problems.append(f"{len(dup)} file(s) listed more than once: {_few(dup)}")
    if no_aux:
        problems.append(f"{len(no_aux)} row(s) without a value in the {aux_name!r} column (the second "
                        f"label; every image needs one): {_few(no_aux, 3)}")
    if ci_aux is not None and entries and len(set(aux.values())) < 2:
        problems.append(f"the {aux_name!r} column holds only one value ({next(iter(aux.values()))!r}): a "
                        "second head needs at least two different values to learn anything; remove the "
                        "column or fill it in")
    if problems:
        raise DataError(f"{csv_path.name} cannot be used. " + "; ".join(problems) + ".")
    classes = sorted({e.label for e in entries})
    warnings = []
    splits = {e.split for e in entries}
    if "" in splits and len(splits) > 1:
        warnings.append("Some rows have a split and some do not; rows without one count as unsplit.")
    if len(classes) == 1:
        warnings.append(f"Only one class ({classes[0]}): training a classifier needs at least 2.")
    if extra_cells:
        warnings.append(f"{extra_cells} row(s) have columns after path,label,split that were ignored: to "
                        "train a second head on one, add a header row naming the columns "
                        "(path,label,split,<name>).")
    return Listing(root, "csv", entries, classes, warnings, [], aux_name, aux)


def list_source(source: str | os.PathLike, *, roots: Sequence[str | os.PathLike] | None = None,
                check_root: bool = True) -> Listing:
    """A folder or a ``.csv`` manifest, after checking it lies inside the allowed data roots."""
    path = Path(source).expanduser()
    if check_root:
        check_allowed(path, roots)
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_csv_manifest(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        raise DataError(f"{path.name} is a zip: import it first (taillab data import {path}).")
    return list_folder(path)


# --- zip import ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImportResult:
    path: Path  # the dataset folder in the workspace
    name: str
    files: int  # files extracted
    skipped: int  # noise entries (__MACOSX, .DS_Store, ...) not extracted
    unwrapped: str | None  # the single top-level folder that was removed, if any


def dataset_name(name: str) -> str:
    """A safe folder name: letters, digits, '-', '_' and '.', at most 64 characters."""
    safe = re.sub(r"[^\w.-]+", "-", name, flags=re.UNICODE).strip("-.")[:64]
    if not safe:
        raise DataError(f"{name!r} is not usable as a dataset name: use letters, digits, - or _.")
    return safe


def _member_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    if not info.flag_bits & 0x800:  # no UTF-8 flag: zipfile decoded cp437; many tools wrote UTF-8
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name.replace("\\", "/")


def _check_member(info: zipfile.ZipInfo, name: str) -> PurePosixPath:
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise DataError(f"The zip contains an absolute path ({name!r}); refusing to extract it.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"The zip contains a path that leaves its folder ({name!r}); refusing to extract it.")
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        raise DataError(f"The zip contains a symbolic link ({name!r}); links are not allowed.")
    if info.flag_bits & 0x1:
        raise DataError(f"The zip entry {name!r} is encrypted; upload an unencrypted zip.")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def import_zip(src: str | os.PathLike | BinaryIO | bytes, *, name: str | None = None,
               max_total_bytes: int = MAX_ZIP_TOTAL_BYTES, max_files: int = MAX_ZIP_FILES,
               max_ratio: float = MAX_ZIP_RATIO, roots: Sequence[str | os.PathLike] | None = None,
               check_root: bool = True) -> ImportResult:
    """Extract a zip of class folders into ``<workspace>/datasets/<name>/``.

    ``src`` is a path (checked against the allowed data roots), an open binary file or bytes
    (an upload). ``name`` defaults to the zip's file name. A single top-level folder wrapping the
    class folders is unwrapped; ``__MACOSX/``, ``.DS_Store`` and similar noise is skipped.
    Everything is checked before anything is written; extraction goes to a temporary folder that
    is renamed into place at the end, so a failure leaves nothing behind and an existing dataset
    is never overwritten. Raises DataError for a file that is not a zip, unsafe paths, symbolic
    links, encrypted entries, archives over the size / count / compression-ratio limits and a zip
    with no images in class folders.
    """
    if isinstance(src, (bytes, bytearray)):
        fileobj: BinaryIO = io.BytesIO(src)
        default_name = "upload"
    elif isinstance(src, (str, os.PathLike)):
        p = Path(src).expanduser()
        if check_root:
            check_allowed(p, roots)
        if not p.is_file():
            raise DataError(f"The zip file {p} does not exist.")
        fileobj = open(p, "rb")
        default_name = p.name[:-4] if p.name.lower().endswith(".zip") else p.stem
    else:
        fileobj = src
        default_name = Path(getattr(src, "name", "upload")).stem or "upload"
    name = dataset_name(name or default_name)
    try:
        try:
            zf = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as e:
            raise DataError(f"This is not a readable zip file ({e}).") from e
        with zf:
            return _extract(zf, name, max_total_bytes, max_files, max_ratio)
    finally:
        if isinstance(src, (str, os.PathLike)):
            fileobj.close()


def _extract(zf: zipfile.ZipFile, name: str, max_total_bytes: int, max_files: int,
             max_ratio: float) -> ImportResult:
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    skipped = 0
    total = compressed = 0
    infos = zf.infolist()
    if len(infos) > max_files:
        raise DataError(f"The zip holds {len(infos):,} entries, over the limit of {max_files:,}.")
    seen: set[str] = set()
    for info in infos:
        mname = _member_name(info)
        rel = _check_member(info, mname)
        if any(_is_noise(part) for part in rel.parts):
            skipped += 1
            continue
        if info.is_dir() or mname.endswith("/"):
            continue
        key = str(rel)
        if key in seen:
            raise DataError(f"The zip contains {key!r} twice; it is ambiguous which copy to use.")
        seen.add(key)
        total += info.file_size
        compressed += info.compress_size
        if total > max_total_bytes:
            raise DataError(f"The zip would extract to more than {max_total_bytes / 1024**3:.1f} GiB "
                            "(the limit); split it or raise the limit.")
        if info.file_size > _RATIO_MIN_MEMBER and info.file_size > max_ratio * max(info.compress_size, 1):
            raise DataError(f"The zip entry {mname!r} expands {info.file_size / max(info.compress_size, 1):,.0f}x "
                            f"(limit {max_ratio:g}x): this looks like a zip bomb.")
        members.append((info, rel))
    if total > _RATIO_MIN_MEMBER and total > max_ratio * max(compressed, 1):
        raise DataError(f"The zip expands {total / max(compressed, 1):,.0f}x (limit {max_ratio:g}x): "
                        "this looks like a zip bomb.")
    if not any(is_image_name(rel.name) for _, rel in members):
        raise DataError("The zip holds no image files (PNG, JPEG, WebP, BMP, GIF, TIFF).")

    # One folder wrapping everything (what "Compress folder" makes): drop it.
    unwrapped = None
    tops = {rel.parts[0] for _, rel in members}
    if len(tops) == 1 and all(len(rel.parts) >= 3 for _, rel in members):
        unwrapped = tops.pop()
        members = [(info, PurePosixPath(*rel.parts[1:])) for info, rel in members]

    datasets = workspace.home() / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    final = datasets / name
    if final.exists():
        raise DataError(f"A dataset named {name!r} already exists ({final}). Choose another name "
                        "or delete the old one first.")
    tmp = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=datasets))
    try:
        real_tmp = os.path.realpath(tmp)
        for info, rel in members:
            target = tmp.joinpath(*rel.parts)
            if not os.path.realpath(target).startswith(real_tmp + os.sep):
                raise DataError(f"The zip entry {info.filename!r} would be written outside the dataset folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            try:
                with zf.open(info) as fin, open(target, "wb") as fout:
                    while chunk := fin.read(1 << 20):
                        written += len(chunk)
                        if written > info.file_size:  # the header lied about the size
                            raise DataError(f"The zip entry {info.filename!r} is larger than it declares.")
                        fout.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                raise DataError(f"The zip entry {info.filename!r} is damaged or uses an unsupported "
                                f"compression ({e}).") from e
        listing = list_folder(tmp)  # DataError if there are no images in class folders
        del listing
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImportResult(final, name, len(members), skipped, unwrapped)


def import_source(source: str | os.PathLike, *, name: str | None = None,
                  roots: Sequence[str | os.PathLike] | None = None, check_root: bool = True) -> Listing:
    """Make a source usable and list it: a zip is extracted into the workspace, a folder or CSV
    is checked in place (never copied, never modified). ``check_root`` False (the CLI, run by the
    user on their own machine) accepts any readable path."""
    path = Path(source).expanduser()
    if check_root:
        check_allowed(path, roots)
    if path.is_file() and path.suffix.lower() == ".zip":
        res = import_zip(path, name=name, check_root=False)
        listing = list_folder(res.path)
        if res.unwrapped:
            listing.warnings.insert(0, f"Unwrapped the top-level folder {res.unwrapped!r}.")
        return listing
    if path.is_file() and path.suffix.lower() != ".csv":
        raise DataError(f"{path.name} is neither a zip, a CSV manifest nor a folder.")
    return list_source(path, check_root=False)
