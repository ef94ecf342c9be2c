"""Reading and writing the ArtGAN split and class files in every form that circulates.

Forms (see DESIGN section 2):
- class files: `index name` per line (`artist_class`, `genre_class`, `style_class.txt`);
- the artist split files: a header `(Path to image),, (Groundtruth class)`, a blank line, then `path,,label`;
- the genre/style split files: `path,label` with CRLF line endings;
- plain `path,label` copies of the artist files.
A UTF-8 BOM, trailing spaces and blank lines are tolerated. Rows that cannot be used are returned as
`RowProblem`s (file, line, reason) rather than raised, so one bad row never loses a whole file.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from artextract.config import TASKS
from artextract.data.names import outside_reason
from artextract.errors import DataError

ARTIST_HEADER = "(Path to image),, (Groundtruth class)"
_HEADER_RE = re.compile(r"^\(\s*path to image\s*\)\s*,,?\s*\(\s*groundtruth class\s*\)$", re.IGNORECASE)
_CLASS_LINE_RE = re.compile(r"^(\d+)\s+(\S.*)$")

# The names each file goes by; variants with and without an extension circulate.
_CLASS_FILE_STEMS = {task: f"{task}_class" for task in TASKS}
_EXTENSIONS = ("", ".csv", ".txt")


@dataclass(frozen=True)
class SplitRow:
    path: str
    label: int
    file: str
    line: int


@dataclass(frozen=True)
class RowProblem:
    file: str
    line: int
    reason: str
    text: str


# ---------------------------------------------------------------- writing


def format_class_file(names: Sequence[str]) -> str:
    return "".join(f"{index} {name}\n" for index, name in enumerate(names))


def format_split_file(rows: Iterable[tuple[str, int]], artist_form: bool) -> str:
    """The artist form (header, blank line, `,,`, LF) or the genre/style form (`,`, CRLF)."""
    if artist_form:
        return ARTIST_HEADER + "\n\n" + "".join(f"{path},,{label}\n" for path, label in rows)
    return "".join(f"{path},{label}\r\n" for path, label in rows)


def split_file_name(task: str, split: str) -> str:
    """The published file name: the artist files have no extension, the others end in `.csv`."""
    return f"{task}_{split}" if task == "artist" else f"{task}_{split}.csv"


def class_file_name(task: str) -> str:
    return {"artist": "artist_class", "genre": "genre_class", "style": "style_class.txt"}[task]


# ---------------------------------------------------------------- finding files


def find_file(folder: Path, stem: str) -> Path | None:
    """`stem`, `stem.csv` or `stem.txt` in `folder` (case-insensitive), or None."""
    wanted = {(stem + ext).lower() for ext in _EXTENSIONS}
    matches = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower() in wanted)
    return matches[0] if matches else None


def find_class_file(folder: Path, task: str) -> Path | None:
    return find_file(folder, _CLASS_FILE_STEMS[task])


def find_split_file(folder: Path, task: str, split: str) -> Path | None:
    return find_file(folder, f"{task}_{split}")


# ---------------------------------------------------------------- reading


def _read_lines(path: Path, per_line: bool = False) -> list[str | None]:
    """The file's lines. A file that is not UTF-8 is refused, unless `per_line`: then each line that is not comes
    back as None (one bad row of a split file must not lose the file), while a file mostly of such lines (not an
    ArtGAN file at all) is still refused."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror}") from None
    data = _utf8(data, path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        refusal = DataError(f"{path}: line {line} is not UTF-8 text; is this an ArtGAN split or class file?")
        if not per_line:
            raise refusal from None
        lines = [_decoded(raw) for raw in data.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n")
                 .replace(b"\r", b"\n").split(b"\n")]
        if sum(line is None for line in lines) * 2 > sum(bool(line) or line is None for line in lines):
            raise refusal from None
        return lines
    # splitlines() also splits on form feeds and other exotic separators; ArtGAN files use \n or \r\n.
    return list(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


def _utf8(data: bytes, path: Path) -> bytes:
    """UTF-16 with a byte-order mark (what Excel and Notepad save as "Unicode") as UTF-8; UTF-16 without one (of
    unknown byte order) refused, rather than read as rows of NULs."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: UTF-16 text that does not decode at byte {err.start}; save it as UTF-8") \
                from None
    if len(data) >= 8 and max(data[0::2].count(0), data[1::2].count(0)) > len(data) // 4:  # ASCII in UTF-16
        raise DataError(f"{path}: looks like UTF-16 without a byte-order mark (every other byte is NUL); save it "
                        "as UTF-8")
    return data


def _decoded(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Blank in a single-byte encoding the file may be in (a no-break space, NEL): a blank line, not a bad row.
        return "" if any(_blank_in(raw, encoding) for encoding in ("latin-1", "cp1252", "cp437")) else None


def _blank_in(raw: bytes, encoding: str) -> bool:
    try:
        return not raw.decode(encoding).strip()
    except UnicodeDecodeError:
        return False


def read_class_file(path: Path) -> list[str]:
    """Class names in index order; the file must list indices 0..n-1 exactly once."""
    names: dict[int, str] = {}
    lines_of: dict[str, int] = {}
    for number, raw in enumerate(_read_lines(path), start=1):
        assert raw is not None  # strict reading: a non-UTF-8 class file was refused
        line = raw.strip()
        if not line:
            continue
        match = _CLASS_LINE_RE.match(line)
        if not match:
            raise DataError(f"{path}:{number}: expected 'index name', got {line[:80]!r}")
        index, name = int(match.group(1)), match.group(2).strip()
        if index in names:
            raise DataError(f"{path}:{number}: class index {index} appears twice")
        if name in lines_of:  # two indices, one name: their paintings would be told apart by nothing
            raise DataError(f"{path}: lines {lines_of[name]} and {number} both name the class {name!r}; give each "
                            "class its own name")
        names[index], lines_of[name] = name, number
    if not names:
        raise DataError(f"{path}: no classes found; expected lines of 'index name'")
    if sorted(names) != list(range(len(names))):
        missing = sorted(set(range(max(names) + 1)) - set(names))
        raise DataError(f"{path}: class indices must run 0..{len(names) - 1}; missing {missing[:10]}")
    return [names[i] for i in range(len(names))]


def _detect_separator(lines: list[str], path: Path) -> str:
    """`,,` for the artist form, `,` otherwise; decided on the first data lines."""
    data = [line.strip() for line in lines if line.strip() and not _HEADER_RE.match(line.strip())]
    if not data:
        raise DataError(f"{path}: no rows found; expected 'path,label' or 'path,,label' lines")
    sample = data[:50]
    if sum(",," in line for line in sample) > len(sample) // 2:
        return ",,"
    if sum(re.search(r",\s*-?\d+\s*$", line) is not None for line in sample) > len(sample) // 2:
        return ","
    raise DataError(
        f"{path}: not an ArtGAN split file (expected 'path,label' or 'path,,label' rows, "
        f"first row is {data[0][:80]!r})"
    )


def read_split_file(path: Path, num_classes: int) -> tuple[list[SplitRow], list[RowProblem]]:
    """Rows of a split file, plus the rows that were skipped and why.

    Path checks that need the image root (escaping it, missing files) happen later, in resolution.
    """
    lines = _read_lines(path, per_line=True)
    separator = _detect_separator([line for line in lines if line is not None], path)
    rows: list[SplitRow] = []
    problems: list[RowProblem] = []
    name = path.name
    for number, raw in enumerate(lines, start=1):
        if raw is None:
            problems.append(RowProblem(name, number, "not UTF-8 text (save the file as UTF-8, or fix this row)",
                                       ""))
            continue
        line = raw.strip()
        if not line or _HEADER_RE.match(line):
            continue
        image, sep, label_text = line.rpartition(separator)
        image, label_text = image.strip(), label_text.strip()
        if not sep or not image:
            problems.append(RowProblem(name, number, "no label (expected path" + separator + "label)", line))
            continue
        try:
            label = int(label_text)
        except ValueError:
            problems.append(RowProblem(name, number, f"label {label_text!r} is not an integer", line))
            continue
        if not 0 <= label < num_classes:
            problems.append(RowProblem(name, number, f"label {label} out of range 0..{num_classes - 1}", line))
            continue
        outside = outside_reason(image)
        if outside:
            problems.append(RowProblem(name, number, outside, line))
            continue
        parts = image.replace("\\", "/").split("/")
        rows.append(SplitRow("/".join(p for p in parts if p not in ("", ".")), label, name, number))
    return rows, problems


@dataclass
class CsvFolder:
    """Everything read from a folder of ArtGAN class and split files."""

    classes: dict[str, list[str]]  # task -> class names, for the tasks whose files were found
    rows: dict[tuple[str, str], list[SplitRow]]  # (task, "train" | "val") -> rows
    problems: list[RowProblem]
    files: dict[str, str]  # role ("artist_class", "artist_train", ...) -> file name used
    missing: list[str]  # tasks skipped because their files are absent


def read_csv_folder(folder: Path, tasks: Sequence[str] = TASKS) -> CsvFolder:
    """Read the class file and the train/val split files of each task found in `folder`.

    A task with no files at all is skipped (and listed in `missing`); a task with a class file but no split
    file, or split files but no class file, is an error.
    """
    if not folder.is_dir():
        raise DataError(f"--csv-dir {folder} is not a folder; point it at the ArtGAN CSV files")
    result = CsvFolder({}, {}, [], {}, [])
    for task in tasks:
        class_file = find_class_file(folder, task)
        split_files = {split: find_split_file(folder, task, split) for split in ("train", "val")}
        if class_file is None and not any(split_files.values()):
            result.missing.append(task)
            continue
        if class_file is None:
            raise DataError(f"{folder}: found {task} split files but no class file ({task}_class)")
        absent = [split for split, path in split_files.items() if path is None]
        if absent:
            raise DataError(f"{folder}: found {class_file.name} but no {task}_{absent[0]} split file")
        names = read_class_file(class_file)
        result.classes[task] = names
        result.files[f"{task}_class"] = class_file.name
        for split, path in split_files.items():
            assert path is not None
            rows, problems = read_split_file(path, len(names))
            result.rows[task, split] = rows
            result.problems.extend(problems)
            result.files[f"{task}_{split}"] = path.name
    if not result.classes:
        raise DataError(f"{folder}: no ArtGAN class or split files found (expected e.g. artist_class, "
                        "artist_train, style_class.txt, style_train.csv)")
    return result
