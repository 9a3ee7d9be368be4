"""Upload fuzzing (issue #21, item 9): hostile and broken zips sent to the import, through the
HTTP endpoint (which checks what it can at once and answers 400, or 202 and leaves the rows to the
import job) and through the inline service (``import_samples``).

Every case must end as a 4xx in the API's error shape or as row errors on the failed batch — never
a 5xx or an unexpected exception — and nothing may be half-written: no sample, no candidate, no
media file, no stored upload left behind.
"""
from __future__ import annotations

import io
import json
import time
import zipfile
import zlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from annotation.models import Candidate, ImportBatch, ImportStatus, Sample
from annotation.services import imports
from annotation.services.imports import import_execute, import_samples, import_start
from core.errors import ApplicationError
from tests.annotation.test_imports import base_files, bomb_png, good_mask, png, row
from tests.factories import make_user

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"message", "code", "fields"}


def zip_bytes(files: dict[str, bytes], manifest: bytes | str | None, *, stored: bool = False) -> bytes:
    """A zip of ``files`` plus ``manifest`` (None: no manifest); ``stored`` skips compression so
    that a test can corrupt an entry's bytes in place."""
    buf = io.BytesIO()
    compression = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        if manifest is not None:
            zf.writestr("manifest.jsonl", manifest)
    return buf.getvalue()


def manifest(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)



def flip_byte_in(data: bytes, marker: bytes) -> bytes:
    """``data`` with one byte changed inside the first occurrence of ``marker`` (a CRC mismatch)."""
    at = data.index(marker) + len(marker) // 2
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def uploads(settings) -> list[Path]:
    root = Path(settings.ARTIFACTS_ROOT) / "imports"
    return sorted(root.iterdir()) if root.exists() else []


def media_files(settings) -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def nothing_written(settings) -> None:
    assert not Sample.objects.exists() and not Candidate.objects.exists()
    assert media_files(settings) == [], media_files(settings)
    assert uploads(settings) == [], uploads(settings)


def _traversal_zip() -> bytes:
    files = {**base_files(), "../evil.png": base_files()["img/s1.png"]}
    return zip_bytes(files, manifest(row(source="../evil.png"), row("s2", mask="/etc/passwd"),
                                     row("s3", candidates=[{"image": "out/../../a.png"}, {"image": "out/b.png"}])))


def _bad_crc_image_zip() -> bytes:
    marker = base_files()["img/s1.png"][20:40]  # bytes inside the stored (uncompressed) source image
    return flip_byte_in(zip_bytes(base_files(), manifest(row()), stored=True), marker)


def _bad_crc_manifest_zip() -> bytes:
    text = manifest(row())
    return flip_byte_in(zip_bytes(base_files(), text, stored=True), text.encode()[5:25])


def _nested_zip() -> bytes:
    inner = zip_bytes(base_files(), manifest(row()))
    return zip_bytes({**base_files(), "img/s1.png": inner}, manifest(row()))


def _bomb_manifest_zip() -> bytes:
    # 12 MB of one byte deflates to ~12 KB: a tiny upload whose manifest would fill memory.
    return zip_bytes(base_files(), manifest(row()) + " " * (12 * 1024 * 1024))


def _image_bomb_zip() -> bytes:
    # 25 MB of zeros (over the 20 MB image cap) deflates to ~25 KB.
    return zip_bytes({**base_files(), "img/s1.png": b"\0" * (25 * 1024 * 1024)}, manifest(row()))


# name → (zip bytes, where it must be refused: "request" (400 at once) or "rows" (row errors), a
# word the error must contain)
CASES = {
    "truncated zip": (lambda: zip_bytes(base_files(), manifest(row()))[:300], "request", "zip"),
    "png named .zip": (lambda: base_files()["img/s1.png"], "request", "zip"),
    "empty file": (lambda: b"", "request", "zip|empty"),
    "no manifest": (lambda: zip_bytes(base_files(), None), "request", "manifest"),
    "manifest bomb": (_bomb_manifest_zip, "request", "larger than"),
    "bad crc in the manifest": (_bad_crc_manifest_zip, "request", "damaged"),
    "bad crc in an image": (_bad_crc_image_zip, "rows", "damaged"),
    "image bomb (huge declared size)": (_image_bomb_zip, "rows", "larger than"),
    "pixel bomb": (lambda: zip_bytes({**base_files(), "img/s1.png": bomb_png(30000, 30000)}, manifest(row())),
                   "rows", "bomb"),
    "nested zip as image": (_nested_zip, "rows", "not a readable image"),
    "text file as image": (lambda: zip_bytes({**base_files(), "out/a.png": b"just some text\n"}, manifest(row())),
                           "rows", "not a readable image"),
    "gif as image": (lambda: zip_bytes({**base_files(), "img/s1.png": _gif()}, manifest(row())), "rows", "GIF"),
    "mask size mismatch": (lambda: zip_bytes({**base_files(), "mask/s1.png": png(good_mask((16, 16)))},
                                             manifest(row())), "rows", "mask is 16×16"),
    "line not JSON": (lambda: zip_bytes(base_files(), manifest(row()) + "{not json\n"), "rows", "not valid JSON"),
    "line a JSON list": (lambda: zip_bytes(base_files(), manifest(row()) + "[1, 2]\n"), "rows", "JSON object"),
    "binary manifest": (lambda: zip_bytes(base_files(), b"\xff\xfe\x00garbage\x00\n"), "rows", "JSON"),
    "wrong field types": (lambda: zip_bytes(base_files(), manifest(row(external_id=["x"], prompt={"a": 1},
                                                                       candidates="out/a.png"))), "rows", "must be"),
    "path traversal": (_traversal_zip, "rows", "stay inside"),
}


def mentions(body, words: str) -> bool:
    """Whether the JSON of ``body`` contains one of the ``|``-separated ``words``."""
    text = json.dumps(body, ensure_ascii=False)
    return any(word in text for word in words.split("|"))


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, format="GIF")
    return buf.getvalue()


@pytest.fixture
def curator_client():
    client = APIClient()
    client.force_authenticate(make_user("fuzz-curator", "curator"))
    return client


def _post(client: APIClient, data: bytes, name: str = "upload.zip"):
    return client.post("/api/imports/", {"file": SimpleUploadedFile(name, data, content_type="application/zip")},
                       format="multipart")


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_hostile_upload_is_a_4xx_or_row_errors_and_writes_nothing(case, curator_client, settings):
    build, where, word = CASES[case]
    response = _post(curator_client, build())
    assert response.status_code < 500, response.content
    if where == "request":
        assert response.status_code in (400, 413), response.content
        body = response.json()
        assert set(body) == ERROR_KEYS and mentions(body, word), body
        assert not ImportBatch.objects.exists()
    else:
        assert response.status_code == 202, response.content
        batch = import_execute(response.json()["job"]["id"])
        assert batch.status == ImportStatus.FAILED
        assert batch.errors and all(set(e) == {"line", "error"} for e in batch.errors), batch.errors
        assert mentions(batch.errors, word), batch.errors
        detail = curator_client.get(f"/api/imports/{batch.pk}/")
        assert detail.status_code == 200 and detail.json()["status"] == "failed"
    nothing_written(settings)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_inline_import_refuses_the_same_uploads_with_an_application_error(case, tmp_path, settings):
    build, _where, word = CASES[case]
    path = tmp_path / "upload.zip"
    path.write_bytes(build())
    with pytest.raises(ApplicationError) as caught:
        import_samples(path=path)
    assert mentions({"m": caught.value.message, "f": caught.value.fields}, word), caught.value.fields
    nothing_written(settings)


def test_an_oversize_archive_is_refused_before_it_is_stored(curator_client, settings):
    settings.UPLOAD_MAX_ARCHIVE_BYTES = 512
    data = zip_bytes(base_files(), manifest(row()))
    assert len(data) > 512
    response = _post(curator_client, data)
    assert response.status_code == 400 and response.json()["code"] == "too_large"
    nothing_written(settings)


def test_the_start_service_refuses_without_recording_anything(settings):
    """``import_start`` (what the endpoint and the dashboard page call) raises ApplicationError and
    leaves no batch, job or stored upload for a request-level refusal."""
    for case in ("truncated zip", "manifest bomb", "no manifest"):
        upload = SimpleUploadedFile("x.zip", CASES[case][0](), content_type="application/zip")
        with pytest.raises(ApplicationError):
            import_start(upload=upload, user=None, enqueue=False)
    assert not ImportBatch.objects.exists()
    nothing_written(settings)


def test_one_large_image_reused_across_rows_is_decoded_once(tmp_path, settings, monkeypatch):
    """A 4000×4000 source shared by many rows: the import's cost must not grow with a decode per
    row (each row here fails on its mask, so nothing is written either)."""
    big = png(Image.new("RGB", (4000, 4000), (30, 60, 90)))
    files = {**base_files(), "img/big.png": big}
    rows = [row(f"s{i}", source="img/big.png") for i in range(12)]  # masks are 32×32: every row fails
    path = tmp_path / "big.zip"
    path.write_bytes(zip_bytes(files, manifest(*rows)))
    decoded = []
    real = imports.open_image

    def counting(data: bytes, **kwargs):
        if data == big:
            decoded.append(1)
        return real(data, **kwargs)

    monkeypatch.setattr(imports, "open_image", counting)
    started = time.perf_counter()
    with pytest.raises(ApplicationError) as caught:
        import_samples(path=path)
    elapsed = time.perf_counter() - started
    errors = caught.value.fields["rows"]
    mask_errors = [e["line"] for e in errors if e["error"].startswith("mask is 32×32 but the image is 4000×4000")]
    assert mask_errors == list(range(1, 13)), errors
    assert len(decoded) == 1, f"the shared 4000×4000 image was decoded {len(decoded)} times for 12 rows"
    assert elapsed < 10, elapsed
    nothing_written(settings)


def test_a_zip_entry_that_lies_about_its_size_is_a_row_error(tmp_path, settings):
    """The central directory says 100 bytes, the data inflates to 25 MB: reading it must stop at the
    cap or fail as damaged, not fill memory or raise."""
    data = bytearray(zip_bytes({**base_files(), "img/s1.png": b"\0" * (25 * 1024 * 1024)}, manifest(row())))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("img/s1.png")
    # Patch the uncompressed size in the central directory entry (offset 24 after its signature).
    name = b"img/s1.png"
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
    assert central > 0 and info.file_size == 25 * 1024 * 1024
    data[central + 24:central + 28] = (100).to_bytes(4, "little")
    local = info.header_offset
    data[local + 22:local + 26] = (100).to_bytes(4, "little")
    path = tmp_path / "liar.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(ApplicationError) as caught:
        import_samples(path=path)
    assert caught.value.fields["rows"][0]["line"] == 1, caught.value.fields
    nothing_written(settings)


def test_a_crafted_zlib_stream_in_the_manifest_is_refused(tmp_path, settings):
    """A manifest entry whose deflate stream is garbage: 'damaged', not a 500."""
    text = manifest(row()).encode()
    good = zip_bytes(base_files(), text)
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        info = zf.getinfo("manifest.jsonl")
    data = bytearray(good)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start:start + 8] = zlib.compress(b"x")[:8][::-1]
    path = tmp_path / "z.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(ApplicationError):
        import_samples(path=path)
    nothing_written(settings)
