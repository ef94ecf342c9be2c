"""Property-based tests of the CSV parser and the path resolver (issue 13): arbitrary text in any encoding, with
any separators and line endings, is parsed or reported, never crashes, and never yields a path outside the
image root."""

from __future__ import annotations

import os
import posixpath
import tempfile
import unicodedata
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from artextract.data.artgan_files import read_class_file, read_csv_folder, read_split_file
from artextract.data.names import name_key
from artextract.data.path_index import PathIndex
from artextract.errors import DataError

PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces real and hostile split files are made of, so that generated lines often look almost right.
_PIECES = st.sampled_from(["Impressionism/", "claude-monet_", "water-lilies.jpg", ",", ",,", ";", "\t", " ", "..",
                           "/", "\\", "C:", "3", "-1", "999999999999999999999", "(Path to image),, (Groundtruth class)",
                           "\ufeff", "\u00e9", "\u00c3\u00a9", "\u2028", "\x00", "'", "\u2019", "\r\n", "\n", "\r"])
_JUNK = st.lists(st.one_of(_PIECES, st.text(max_size=12)), max_size=12).map("".join)
_PATH = st.lists(st.one_of(_PIECES, st.text(max_size=6)), min_size=1, max_size=6).map("".join)
_ROW = st.builds(lambda path, sep, label: f"{path}{sep}{label}", _PATH,
                 st.sampled_from([",", ",,", ", ", ",,  ", ";", "\t"]),
                 st.one_of(st.integers(-3, 40).map(str), _JUNK))
# Mostly rows that look like rows (so that some parse), among junk lines, with any line ending.
_LINES = st.builds(lambda lines, end: end.join(lines), st.lists(st.one_of(_ROW, _ROW, _ROW, _JUNK), max_size=12),
                   st.sampled_from(["\n", "\r\n", "\r", "\n\n"]))
_ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252", "cp437"])


def _encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


def _inside(root: str, relative: str) -> bool:
    joined = posixpath.normpath(posixpath.join(root, relative))
    return joined == root or joined.startswith(root + "/")


@PROPERTIES
@given(text=_LINES, encoding=_ENCODINGS, num_classes=st.integers(1, 30))
@example(text="../../etc/passwd,1\n/abs/x.jpg,1\nC:\\x.jpg,1\na\\..\\..\\b.jpg,1\n./a//b.jpg,1\n", encoding="utf-8",
         num_classes=3)
@example(text="Impressionism/,0\n\x85", encoding="latin-1", num_classes=1)  # a Latin-1 NEL: blank, not a bad row
@example(text=",,\nImpressionism/,,\n\x85", encoding="cp1252", num_classes=1)  # NEL written as "?": a row
@example(text="Impressionism/,0\n\xa0", encoding="cp437", num_classes=1)  # a cp437 no-break space: blank
def test_split_files_parse_or_report_and_stay_inside_the_root(text, encoding, num_classes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "artist_train"
        path.write_bytes(_encoded(text, encoding))
        try:
            rows, problems = read_split_file(path, num_classes)
        except DataError as err:
            assert str(path) in str(err)  # the message names the file
            return
    # Lines of what the file holds: an encoding without a character writes "?" for it, a line of its own.
    held = _encoded(text, encoding).decode(encoding, errors="replace")
    nonblank = sum(1 for line in held.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line.strip())
    assert len(rows) + len(problems) <= max(nonblank, 1)
    for row in rows:
        assert 0 <= row.label < num_classes
        assert row.path and not row.path.startswith("/") and "\\" not in row.path
        assert ".." not in row.path.split("/") and "" not in row.path.split("/")
        assert _inside("/images", row.path)
    for problem in problems:
        assert problem.line >= 1 and problem.reason


@PROPERTIES
@given(text=_LINES, encoding=_ENCODINGS)
@example(text="0 a\n0 b\n", encoding="utf-8")
@example(text="1 a\n", encoding="utf-8")
def test_class_files_parse_or_say_which_line_is_wrong(text, encoding):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "artist_class"
        path.write_bytes(_encoded(text, encoding))
        try:
            names = read_class_file(path)
        except DataError as err:
            assert str(path) in str(err)
            return
    assert names and all(name and name == name.strip() for name in names)


@settings(max_examples=60, deadline=None)
@given(files=st.dictionaries(st.sampled_from(["artist_class", "artist_train", "artist_val", "style_class.txt",
                                              "style_train.csv", "style_val.csv", "genre_class", "README"]),
                             st.tuples(_LINES, _ENCODINGS), max_size=8))
def test_a_folder_of_arbitrary_csv_files_is_read_or_refused_in_one_error(files):
    with tempfile.TemporaryDirectory() as folder:
        for name, (text, encoding) in files.items():
            (Path(folder) / name).write_bytes(_encoded(text, encoding))
        try:
            result = read_csv_folder(Path(folder))
        except DataError:
            return
    for (task, _split), rows in result.rows.items():
        assert all(0 <= row.label < len(result.classes[task]) for row in rows)


_NAME = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"), min_size=1, max_size=10)
_RELATIVE = st.lists(_NAME.filter(lambda n: n not in (".", "..")), min_size=1, max_size=4).map("/".join)


@PROPERTIES
@given(files=st.lists(_RELATIVE, max_size=25, unique=True), queries=st.lists(st.one_of(_RELATIVE, _LINES),
                                                                                max_size=10))
def test_the_resolver_only_ever_answers_with_a_listed_file(files, queries):
    index = PathIndex(files)
    for query in queries + [f.removeprefix(index.prefix) for f in files]:
        found = index.resolve(query)
        if found is None:
            continue
        assert found.path in index.files  # one of the files that exist: never a path made from the query
        assert index.member(found.path) in files
        assert found.how in {"exact", "mojibake", "unicode", "case", "apostrophe"}
        assert index.closest(query) is None or index.closest(query) in index.files


@PROPERTIES
@given(files=st.lists(_RELATIVE, min_size=1, max_size=25, unique=True), data=st.data())
def test_every_listed_file_resolves_to_itself_and_its_respellings_to_a_twin(files, data):
    index = PathIndex(files)
    path = data.draw(st.sampled_from(sorted(index.files)))
    assert index.resolve(path).path == path
    respelled = data.draw(st.sampled_from([path.upper(), path.casefold(), unicodedata.normalize("NFD", path),
                                           path.replace("'", "\u2019")]))
    found = index.resolve(respelled)
    if found is not None:  # (a respelling may fall outside what the key folds, e.g. upper-casing 'ß')
        assert name_key(found.path) in {name_key(respelled), name_key(path)} or found.how == "apostrophe"


def test_paths_resolve_inside_a_real_folder(tmp_path):
    """The end of the chain: a resolved member joined to the root names a file under it."""
    (tmp_path / "a b").mkdir()
    (tmp_path / "a b" / "x.jpg").write_bytes(b"")
    index = PathIndex(["a b/x.jpg"])
    for query in ["a b/x.jpg", "A B/X.JPG", "a b/../a b/x.jpg", "../a b/x.jpg"]:
        found = index.resolve(query)
        if found is not None:
            full = os.path.realpath(tmp_path / index.member(found.path))
            assert full.startswith(str(tmp_path.resolve()) + os.sep)
