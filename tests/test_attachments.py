"""Images and files as Responses API content parts: figures and PIL images become PNG data URLs, files go inline,
and a missing, unsupported or oversized attachment says so in one short sentence."""

from __future__ import annotations

import base64
import io
import struct
from pathlib import Path

import pytest

from ipy_responses_ws.attachments import (
    DEFAULT_MAX_BYTES,
    Attachment,
    AttachmentError,
    file_item,
    format_size,
    image_item,
    part_for,
    resolve,
    user_message_with,
)
from ipy_responses_ws.errors import ConfigError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")
Image = pytest.importorskip("PIL.Image")


def decode(data_url: str) -> tuple[str, bytes]:
    """(mime, bytes) of a ``data:<mime>;base64,…`` URL."""
    head, _, payload = data_url.partition(",")
    assert head.startswith("data:") and head.endswith(";base64")
    return head[5:-7], base64.b64decode(payload, validate=True)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def jpeg_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "blue").save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def figure():
    fig, ax = plt.subplots(figsize=(4, 3), dpi=50)
    ax.plot([0, 1, 2], [1, 0, 1])
    yield fig
    plt.close(fig)


def test_a_figure_becomes_a_png_data_url_of_its_size(figure) -> None:
    item, label, size = image_item(figure)
    assert item["type"] == "input_image" and item["detail"] == "auto"
    mime, data = decode(item["image_url"])
    assert mime == "image/png" and size == len(data)
    assert png_size(data) == (200, 150)  # 4×3 inches at 50 dpi
    assert label == "Figure 200×150 PNG"
    assert (
        decode(image_item(figure.axes[0])[0]["image_url"])[1][:8] == data[:8]
    )  # an Axes attaches its figure


def test_a_pil_image_becomes_a_png_with_its_pixels() -> None:
    item, label, _ = image_item(Image.new("RGB", (30, 20), (255, 0, 0)))
    mime, data = decode(item["image_url"])
    assert mime == "image/png" and label == "image 30×20 PNG"
    back = Image.open(io.BytesIO(data))
    assert back.size == (30, 20) and back.getpixel((0, 0))[:3] == (255, 0, 0)
    cmyk, _, _ = image_item(Image.new("CMYK", (5, 5)))  # a mode PNG cannot hold is converted
    assert png_size(decode(cmyk["image_url"])[1]) == (5, 5)


def test_raw_bytes_are_typed_by_their_magic() -> None:
    item, label, size = image_item(jpeg_bytes())
    assert decode(item["image_url"])[0] == "image/jpeg" and label == "image bytes (JPEG)"
    assert image_item(b"GIF89a" + b"\0" * 10)[0]["image_url"].startswith("data:image/gif;base64,")
    assert image_item(b"RIFF\0\0\0\0WEBPVP8 ")[0]["image_url"].startswith("data:image/webp;base64,")
    with pytest.raises(AttachmentError, match="not a PNG, JPEG, GIF or WebP image"):
        image_item(b"hello")


def test_image_files_by_extension_and_magic(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes())
    item, label, size = image_item(str(photo))
    assert decode(item["image_url"]) == ("image/jpeg", photo.read_bytes()) and label == "photo.jpg"
    assert size == photo.stat().st_size
    misnamed = tmp_path / "really_a_jpeg.png"
    misnamed.write_bytes(jpeg_bytes())
    assert decode(image_item(misnamed)[0]["image_url"])[0] == "image/jpeg"  # the bytes win
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(AttachmentError, match="does not look like a PNG image"):
        image_item(fake)


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "plot.png"
    with pytest.raises(AttachmentError) as info:
        image_item(missing)
    assert str(missing) in str(info.value) and isinstance(info.value, ConfigError)
    with pytest.raises(AttachmentError, match="report.pdf"):
        file_item(tmp_path / "report.pdf")


def test_unsupported_types_say_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(AttachmentError) as info:
        image_item(42)
    assert "Cannot attach a int as an image" in str(info.value)
    assert "matplotlib Figure" in str(info.value) and "PIL Image" in str(info.value)
    doc = tmp_path / "notes.txt"
    doc.write_text("hi")
    with pytest.raises(AttachmentError, match=r"\.png/\.jpg/\.jpeg/\.gif/\.webp"):
        image_item(doc)
    with pytest.raises(AttachmentError, match="a path"):
        file_item(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(AttachmentError, match="not a file"):
        file_item(tmp_path)


def test_files_over_the_limit_say_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    with big.open("wb") as f:
        f.truncate(DEFAULT_MAX_BYTES + 1)  # sparse: no 20 MB written
    with pytest.raises(AttachmentError) as info:
        file_item(big)
    assert "over the 20 MB limit" in str(info.value)
    small = tmp_path / "small.png"
    small.write_bytes(jpeg_bytes((64, 64)))
    with pytest.raises(AttachmentError, match="over the 100 B limit"):
        image_item(small, max_bytes=100)


def test_file_items_carry_the_name_and_the_bytes(tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%fake\n")
    item, label, size = file_item(pdf)
    assert item["type"] == "input_file" and item["filename"] == "report.pdf" and label == "report.pdf"
    assert decode(item["file_data"]) == ("application/pdf", pdf.read_bytes()) and size == 15
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    assert decode(file_item(csv)[0]["file_data"])[0] == "text/csv"
    blob = tmp_path / "blob.unknownext"
    blob.write_bytes(b"%PDF-1.7")
    assert decode(file_item(blob)[0]["file_data"])[0] == "application/pdf"


def test_part_for_picks_image_or_file(tmp_path: Path, figure) -> None:
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    assert part_for(pdf)[0]["type"] == "input_file"
    assert part_for(figure)[0]["type"] == "input_image"


def test_resolve_prefers_the_variable_then_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("fig").write_text("a file called fig")
    assert resolve("fig", {"fig": "the variable"}) == "the variable"
    assert resolve("fig", {}) == Path("fig")
    with pytest.raises(AttachmentError) as info:
        resolve("chart", {})
    assert "no variable 'chart'" in str(info.value) and "no file 'chart'" in str(info.value)


def test_the_user_message_matches_the_sdk_types(figure, tmp_path: Path) -> None:
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    parts = [image_item(figure)[0], file_item(pdf)[0]]
    message = user_message_with("What does this show?", parts)
    assert message["type"] == "message" and message["role"] == "user"
    assert message["content"][0] == {"type": "input_text", "text": "What does this show?"}
    assert [p["type"] for p in message["content"]] == ["input_text", "input_image", "input_file"]
    pydantic = pytest.importorskip("pydantic")
    responses = pytest.importorskip("openai.types.responses")
    pydantic.TypeAdapter(responses.EasyInputMessageParam).validate_python(message)
    assert user_message_with("", parts)["content"][0]["type"] == "input_image"


def test_sizes_and_labels_read_well() -> None:
    assert [format_size(n) for n in (850, 1229, 20 * 1024 * 1024)] == ["850 B", "1.2 KB", "20 MB"]
    assert Attachment("df", "pandas DataFrame", 1229).label == "df (1.2 KB)"
