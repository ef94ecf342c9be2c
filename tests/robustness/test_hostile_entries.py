"""One bad entry never stops a run (issue 13, items 4 and 6): zip members with a bad CRC, encrypted or deflate64
members, members that inflate past the size limit, symlink loops and FIFOs are each skipped with their reason,
and nothing blocks."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from artextract.config import PrepareConfig
from artextract.data.image_source import UnreadableFile, ZipSource, read_regular_file
from artextract.layout import DataFolder
from artextract.stages.prepare import prepare_dataset

pytestmark = pytest.mark.timeout(120)  # a FIFO that blocked would hang here, not pass


def _central_entries(data: bytes) -> dict[str, int]:
    """Offset of each member's central-directory record, by name."""
    end = data.rindex(b"PK\x05\x06")
    count, _size, offset = struct.unpack("<HII", data[end + 10:end + 20])
    entries = {}
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[offset + 28:offset + 34])
        entries[data[offset + 46:offset + 46 + name_len].decode()] = offset
        offset += 46 + name_len + extra_len + comment_len
    return entries


def _patch(data: bytearray, info: zipfile.ZipInfo, central: int, *, flags: int | None = None,
           method: int | None = None) -> None:
    """Set the flag bits or compression method in both headers of a member, as another zip tool would write them."""
    local = info.header_offset
    if flags is not None:
        struct.pack_into("<H", data, local + 6, flags)
        struct.pack_into("<H", data, central + 8, flags)
    if method is not None:
        struct.pack_into("<H", data, local + 8, method)
        struct.pack_into("<H", data, central + 10, method)


def _hostile_zip(folder: Path, archive: Path) -> dict[str, str]:
    """wikiart.zip of `folder` with four members made hostile; returns member -> the reason expected."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    victims = {files[0]: "bad crc", files[1]: "encrypted", files[2]: "deflate64", files[3]: "bomb"}
    with zipfile.ZipFile(archive, "w") as zf:
        for path in files:
            name = f"wikiart/{path.relative_to(folder).as_posix()}"
            kind = victims.get(path)
            if kind == "bomb":  # 3 MB of zeros, a few KB in the archive; the limit below is 1 MB
                zf.writestr(name, b"\0" * (3 << 20), compress_type=zipfile.ZIP_DEFLATED)
            else:
                zf.write(path, name, compress_type=zipfile.ZIP_STORED if kind == "bad crc" else zipfile.ZIP_DEFLATED)
    data = bytearray(archive.read_bytes())
    central = _central_entries(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    expected = {}
    for path, kind in victims.items():
        name = f"wikiart/{path.relative_to(folder).as_posix()}"
        info = infos[name]
        if kind == "bad crc":  # one flipped byte in the middle of the stored data
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            data[start + info.compress_size // 2] ^= 0xFF
            expected[name] = "damaged in the archive (Bad CRC-32"
        elif kind == "encrypted":
            _patch(data, info, central[name], flags=info.flag_bits | 0x1)
            expected[name] = "encrypted in the archive"
        elif kind == "deflate64":
            _patch(data, info, central[name], method=9)
            expected[name] = "compressed with deflate64"
        else:
            expected[name] = "3 MB, over the 1 MB limit"
    archive.write_bytes(bytes(data))
    return expected


def _skip_reasons(data: Path) -> dict[str, str]:
    manifest = pd.read_parquet(DataFolder(data).manifest)
    skipped = manifest[manifest["status"] == "skipped"]
    return dict(zip(skipped["path"], skipped["skip_reason"], strict=True))


def test_hostile_zip_members_are_skipped_with_their_reason(make_synth, tmp_path):
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    archive = tmp_path / "wikiart.zip"
    expected = _hostile_zip(synth / "wikiart", archive)
    for workers in (1, 2):  # in this process, and in pool workers
        out = tmp_path / f"data{workers}"
        result = prepare_dataset(synth / "csv", archive, out,
                                 PrepareConfig(cache_size=24, workers=workers, max_file_mb=1))
        reasons = _skip_reasons(out)
        for member, reason in expected.items():
            path = member.removeprefix("wikiart/")
            assert path in reasons, (path, reasons)
            assert reason in reasons[path], (path, reasons[path])
        assert (result.manifest["status"] == "ok").sum() >= len(result.manifest) - len(expected) - 2


def test_a_member_whose_header_understates_its_size_is_read_only_to_the_limit(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("wikiart/x.jpg", b"\0" * (5 << 20), compress_type=zipfile.ZIP_DEFLATED)
    source = ZipSource(archive, max_bytes=1 << 20)
    with pytest.raises(UnreadableFile, match="over the 1 MB limit"):
        source.read("wikiart/x.jpg")
    source._open()[1]["wikiart/x.jpg"].file_size = 1000  # as a lying header would declare
    with pytest.raises(UnreadableFile, match=r"over the 1 MB limit|damaged in the archive"):
        source.read("wikiart/x.jpg")


def test_a_fifo_and_a_symlink_loop_in_the_image_folder_are_skipped(make_synth, tmp_path):
    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    images = sorted(p for p in (synth / "wikiart").rglob("*.jpg"))
    fifo, loop = images[0], images[1]
    fifo.unlink()
    os.mkfifo(fifo)
    loop.unlink()
    os.symlink(loop.name, loop)
    out = tmp_path / "data"
    prepare_dataset(synth / "csv", synth / "wikiart", out, PrepareConfig(cache_size=24, workers=1))
    reasons = _skip_reasons(out)
    root = (synth / "wikiart").resolve()
    assert "not a regular file" in reasons[fifo.resolve().relative_to(root).as_posix()]
    assert "symbolic links" in reasons[loop.parent.resolve().relative_to(root).as_posix() + "/" + loop.name]


def test_predict_reports_a_fifo_and_a_loop_without_blocking(run_cli, evaluated_run, tmp_path):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(folder / "good.jpg")
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("loop.jpg", folder / "loop.jpg")
    out = tmp_path / "p.csv"
    named = [folder / n for n in ("good.jpg", "pipe.jpg", "loop.jpg")]
    result = run_cli("predict", "--model", evaluated_run, *named, "--output", out)
    assert result.code == 0, result.stderr
    statuses = pd.read_csv(out).groupby("source")["status"].first()
    assert statuses[str(folder / "good.jpg")] == "ok"
    assert "not a regular file" in statuses[str(folder / "pipe.jpg")]
    assert "symbolic links" in statuses[str(folder / "loop.jpg")]
    # The folder given instead: the same entries reported the same way (issue 21: they were dropped silently),
    # and a dangling link too.
    os.symlink("gone.jpg", folder / "dangling.jpg")
    result = run_cli("predict", "--model", evaluated_run, folder, "--output", out, "--force")
    assert result.code == 0, result.stderr
    from_folder = pd.read_csv(out).groupby("source")["status"].first()
    assert from_folder[str(folder / "good.jpg")] == "ok"
    assert "not a regular file" in from_folder[str(folder / "pipe.jpg")]
    assert "symbolic links" in from_folder[str(folder / "loop.jpg")]
    assert "not found" in from_folder[str(folder / "dangling.jpg")]
    assert "skipped" in result.stderr and "dangling.jpg" in result.stderr


def test_reading_a_file_over_the_limit_stops_before_reading_it(tmp_path):
    big = tmp_path / "big.jpg"
    with open(big, "wb") as handle:  # sparse: 3 GB that take no disk
        handle.truncate(3 << 30)
    with pytest.raises(UnreadableFile, match="3,072 MB, over the 256 MB limit"):
        read_regular_file(big)


def test_members_named_outside_the_archive_are_reported_and_the_rest_prepared(make_synth, tmp_path, caplog):
    """Issue 21, item 6: one `../../x.jpg` or `/tmp/x.jpg` member used to hide the `wikiart/` wrapper folder, so
    that no CSV row matched and prepare refused the whole archive."""
    import json

    synth = make_synth(tmp_path / "synth", artists=3, per_artist=6, size=40)
    archive = tmp_path / "wikiart.zip"
    hostile = ["../../x.jpg", "/tmp/artextract-x.jpg", "wikiart/../../y.jpg", "C:\\evil.jpg"]
    images = sorted((synth / "wikiart").rglob("*.jpg"))
    with zipfile.ZipFile(archive, "w") as zf:
        for path in images:
            zf.write(path, "wikiart/" + path.relative_to(synth / "wikiart").as_posix())
        for name in hostile:
            zf.writestr(zipfile.ZipInfo(name), images[0].read_bytes())
    result = prepare_dataset(synth / "csv", archive, tmp_path / "data", PrepareConfig(cache_size=24, workers=1))
    assert (result.manifest["status"] == "ok").sum() == len(images)  # every real painting, none lost
    report = json.loads(DataFolder(tmp_path / "data").report_json.read_text())
    assert sorted(item["path"] for item in report["refused_files"]) == sorted(hostile)
    assert "Files refused unread: 4" in DataFolder(tmp_path / "data").report_md.read_text()
    assert "../../x.jpg" in caplog.text and not Path("/tmp/artextract-x.jpg").exists()
