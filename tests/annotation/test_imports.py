"""Import validation: good folders and zips land whole; any bad row lands nothing."""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from PIL import Image
from rest_framework.test import APIClient

from annotation.models import Candidate, ImportBatch, ImportStatus, Sample
from annotation.services.imports import ImportFailed, import_samples
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def good_mask(size=(32, 32)) -> Image.Image:
    m = Image.new("L", size, 0)
    m.paste(255, (8, 8, 24, 24))
    return m


def bomb_png(width: int, height: int) -> bytes:
    """A tiny file whose header claims a huge image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def write_folder(root: Path, rows: list[dict], files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def base_files() -> dict[str, bytes]:
    return {
        "img/s1.png": png(Image.new("RGB", (32, 32), (10, 200, 30))),
        "mask/s1.png": png(good_mask()),
        "out/a.png": png(Image.new("RGB", (32, 32), (1, 2, 3))),
        "out/b.png": png(Image.new("RGB", (32, 32), (200, 2, 3))),
    }


def row(ext="s1", **over) -> dict:
    r = {"external_id": ext, "task": "fill", "prompt": "a red circle", "source": "img/s1.png", "mask": "mask/s1.png",
         "candidates": [{"image": "out/a.png", "source_name": "sysA"}, {"image": "out/b.png", "source_name": "sysB"}]}
    r.update(over)
    return r


def test_folder_import_creates_samples_and_candidates(tmp_path):
    batch = import_samples(path=write_folder(tmp_path / "imp", [row()], base_files()))
    assert (batch.status, batch.samples_created, batch.candidates_created) == (ImportStatus.SUCCEEDED, 1, 2)
    sample = Sample.objects.get(external_id="s1")
    assert (sample.width, sample.height, sample.split) == (32, 32, sample.split)
    assert Image.open(default_storage.open(sample.mask.name)).getextrema() == (0, 255)
    assert set(Candidate.objects.values_list("source_name", flat=True)) == {"sysA", "sysB"}


def test_zip_import_through_the_api_as_curator(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in base_files().items():
            zf.writestr(name, data)
        zf.writestr("manifest.jsonl", json.dumps(row()) + "\n")
    client = APIClient()
    client.force_authenticate(make_user("cur", "curator"))
    buf.seek(0)
    buf.name = "batch.zip"
    response = client.post("/api/imports/", {"file": buf}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["samples_created"] == 1
    not_zip = io.BytesIO(b"hello")
    not_zip.name = "x.zip"
    bad = client.post("/api/imports/", {"file": not_zip}, format="multipart")
    assert bad.status_code == 400
    assert "file" in bad.json()["fields"]


BAD_CASES = {
    "grey mask": ({"mask/s1.png": png(Image.new("L", (32, 32), 128))}, {}, "not binary"),
    "empty mask": ({"mask/s1.png": png(Image.new("L", (32, 32), 0))}, {}, "mask is empty"),
    "mask size": ({"mask/s1.png": png(good_mask((16, 16)))}, {}, "mask is 16×16"),
    "candidate size": ({"out/a.png": png(Image.new("RGB", (8, 8)))}, {}, "candidate 0 is 8×8"),
    "not an image": ({"img/s1.png": b"GIF89a nonsense"}, {}, "not a readable image"),
    "too many pixels": ({"img/s1.png": bomb_png(7000, 7000)}, {}, "pixels; the limit"),
    "pixel bomb": ({"img/s1.png": bomb_png(20000, 20000)}, {}, "decompression bomb"),
    "traversal": ({}, {"source": "../../etc/passwd"}, "must be relative"),
    "missing file": ({}, {"source": "img/none.png"}, "does not exist"),
    "unknown task": ({}, {"task": "paint"}, "task must be one of"),
    "bad provenance": ({}, {"candidates": [{"image": "out/a.png", "provenance": "magic"}]}, "provenance"),
}


@pytest.mark.parametrize("case", BAD_CASES, ids=list(BAD_CASES))
def test_one_bad_row_fails_the_whole_import_with_a_row_report(tmp_path, case):
    files_over, row_over, message = BAD_CASES[case]
    good = {f"good/{name}": data for name, data in base_files().items()}
    files = {**base_files(), **files_over, **good}
    good_row = row("good-first", source="good/img/s1.png", mask="good/mask/s1.png",
                   candidates=[{"image": "good/out/a.png"}, {"image": "good/out/b.png"}])
    rows = [good_row, row("bad-second", **row_over)]
    with pytest.raises(ImportFailed) as info:
        import_samples(path=write_folder(tmp_path / "imp", rows, files))
    errors = info.value.batch.errors
    assert [e["line"] for e in errors] == [2]
    assert message in errors[0]["error"]
    assert not Sample.objects.exists()  # all-or-nothing: the good row is not imported either
    assert ImportBatch.objects.get().status == ImportStatus.FAILED


def test_duplicate_external_ids_and_bad_json_are_reported(tmp_path):
    root = write_folder(tmp_path / "imp", [row("dup"), row("dup")], base_files())
    with (root / "manifest.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(ImportFailed) as info:
        import_samples(path=root)
    assert [e["line"] for e in info.value.batch.errors] == [2, 3]


def test_a_failed_write_leaves_no_orphan_files(tmp_path, monkeypatch, settings):
    from annotation.services import imports

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "candidate_create_from_png", boom)
    with pytest.raises(RuntimeError):
        import_samples(path=write_folder(tmp_path / "imp", [row()], base_files()))
    assert not Sample.objects.exists()
    media = Path(settings.MEDIA_ROOT)
    assert not [p for p in media.rglob("*") if p.is_file()]


def test_management_command_imports_and_reports_bad_rows(tmp_path):
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command("import_samples", str(write_folder(tmp_path / "ok", [row()], base_files())), stdout=out)
    assert "Imported 1 samples and 2 candidates" in out.getvalue()
    bad = write_folder(tmp_path / "bad", [row("s9", task="paint")], base_files())
    err = io.StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_samples", str(bad), stderr=err)
    assert "line 1: task must be one of" in err.getvalue()
    with pytest.raises(CommandError, match="does not exist"):
        call_command("import_samples", str(tmp_path / "missing"))
