import pytest

from artextract.data.artgan_files import (
    find_class_file,
    find_split_file,
    read_class_file,
    read_csv_folder,
    read_split_file,
)
from artextract.errors import DataError


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize(
    "text",
    [
        "(Path to image),, (Groundtruth class) \n\nA/a_1.jpg,,0\nB/b_2.jpg,,1\n",  # artist form, as published
        "A/a_1.jpg,0\r\nB/b_2.jpg,1\r\n",  # genre/style form, CRLF
        "\ufeffA/a_1.jpg,0\nB/b_2.jpg,1\n",  # UTF-8 BOM, plain path,label copy of the artist file
        "\n  A/a_1.jpg , 0  \n\n\nB/b_2.jpg,1   \n\n",  # trailing spaces and blank lines
        "A/a_1.jpg,,0\r\nB/b_2.jpg,,1",  # artist form without header, CRLF, no final newline
    ],
)
def test_every_circulating_form_parses_to_the_same_rows(tmp_path, text):
    rows, problems = read_split_file(_write(tmp_path / "split", text), num_classes=3)
    assert problems == []
    assert [(r.path, r.label) for r in rows] == [("A/a_1.jpg", 0), ("B/b_2.jpg", 1)]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_read_with_its_byte_order_mark_and_refused_without_one(tmp_path, encoding):
    text = "A/a_1.jpg,0\r\nB/b_2.jpg,1\r\n"
    data = text.encode(encoding)
    if encoding != "utf-16":  # the explicit-order codecs write no mark: add it, as Windows' editors do
        data = ("\ufeff" + text).encode(encoding)
    path = tmp_path / "style_val.csv"
    path.write_bytes(data)
    rows, problems = read_split_file(path, num_classes=3)
    assert problems == [] and [(r.path, r.label) for r in rows] == [("A/a_1.jpg", 0), ("B/b_2.jpg", 1)]
    path.write_bytes(text.encode("utf-16-le"))  # no mark: which byte order is unknown
    with pytest.raises(DataError, match=r"style_val.csv: looks like UTF-16 without a byte-order mark.*UTF-8"):
        read_split_file(path, num_classes=3)


def test_malformed_rows_are_skipped_with_file_line_and_reason(tmp_path):
    text = ("good/a.jpg,1\r\n"
            "nolabel/b.jpg,\r\n"
            "x/c.jpg,two\r\n"
            "x/d.jpg,7\r\n"
            "/etc/passwd,1\r\n"
            "../outside/e.jpg,1\r\n"
            "x/../../f.jpg,1\r\n"
            "C:\\images\\g.jpg,1\r\n"
            "good/h.jpg,0\r\n")
    rows, problems = read_split_file(_write(tmp_path / "style_train.csv", text), num_classes=3)
    assert [r.path for r in rows] == ["good/a.jpg", "good/h.jpg"]
    assert [r.line for r in rows] == [1, 9]
    reasons = {p.line: p.reason for p in problems}
    assert set(reasons) == {2, 3, 4, 5, 6, 7, 8}
    assert "not an integer" in reasons[3]
    assert "out of range 0..2" in reasons[4]
    assert "absolute" in reasons[5] and "absolute" in reasons[8]
    assert "escapes" in reasons[6] and "escapes" in reasons[7]
    assert all(p.file == "style_train.csv" for p in problems)


def test_a_file_in_no_known_format_is_an_error_naming_it(tmp_path):
    path = _write(tmp_path / "genre_train.csv", "<html><body>Not Found</body></html>\n")
    with pytest.raises(DataError, match=r"genre_train\.csv: not an ArtGAN split file"):
        read_split_file(path, num_classes=10)
    binary = tmp_path / "artist_val"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(DataError, match="artist_val: line 1 is not UTF-8"):
        read_split_file(binary, num_classes=10)


def test_a_row_that_is_not_utf8_is_skipped_and_named_the_rest_read(tmp_path):
    """Issue 21: one Latin-1 byte in one row used to stop prepare for the whole file."""
    path = tmp_path / "artist_train"
    path.write_bytes(b"A/a_1.jpg,,0\nB/andr\xe9-lhote_2.jpg,,1\nC/c_3.jpg,,2\n")
    rows, problems = read_split_file(path, num_classes=3)
    assert [r.path for r in rows] == ["A/a_1.jpg", "C/c_3.jpg"]
    (problem,) = problems
    assert (problem.file, problem.line) == ("artist_train", 2) and "not UTF-8" in problem.reason


def test_two_classes_with_one_name_are_refused_naming_both_lines(tmp_path):
    with pytest.raises(DataError, match=r"lines 1 and 3 both name the class 'Monet'"):
        read_class_file(_write(tmp_path / "artist_class", "0 Monet\n1 Renoir\n2 Monet\n"))


def test_class_files(tmp_path):
    assert read_class_file(_write(tmp_path / "c", "0 Abstract\r\n1 Art_Nouveau \r\n\r\n")) == ["Abstract",
                                                                                               "Art_Nouveau"]
    with pytest.raises(DataError, match=r"c2:2: expected 'index name'"):
        read_class_file(_write(tmp_path / "c2", "0 a\nbroken\n"))
    with pytest.raises(DataError, match="missing"):
        read_class_file(_write(tmp_path / "c3", "0 a\n2 c\n"))


def test_file_name_variants_are_found(tmp_path):
    _write(tmp_path / "Artist_Class.txt", "0 a\n1 b\n")
    _write(tmp_path / "artist_train.csv", "x/a.jpg,0\n")
    _write(tmp_path / "artist_val", "x/b.jpg,1\n")
    assert find_class_file(tmp_path, "artist").name == "Artist_Class.txt"
    assert find_split_file(tmp_path, "artist", "train").name == "artist_train.csv"
    folder = read_csv_folder(tmp_path)
    assert folder.classes == {"artist": ["a", "b"]}
    assert folder.missing == ["style", "genre"]
    assert [r.path for r in folder.rows["artist", "val"]] == ["x/b.jpg"]


def test_incomplete_task_files_are_an_error(tmp_path):
    _write(tmp_path / "genre_class", "0 a\n")
    _write(tmp_path / "genre_train.csv", "x/a.jpg,0\n")
    with pytest.raises(DataError, match="no genre_val split file"):
        read_csv_folder(tmp_path)
    with pytest.raises(DataError, match="no ArtGAN class or split files"):
        read_csv_folder(_empty(tmp_path / "empty"))


def _empty(path):
    path.mkdir()
    return path
