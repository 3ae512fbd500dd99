"""Images and files for a prompt: Responses API content parts built from the user's objects (pure: no I/O but
reading the named file; matplotlib and PIL are used by duck typing, never imported).

The shapes are those of openai-python's ``ResponseInputImageParam`` and ``ResponseInputFileParam``::

    {"type": "input_image", "image_url": "data:image/png;base64,…", "detail": "auto"}
    {"type": "input_file", "filename": "report.pdf", "file_data": "data:application/pdf;base64,…"}

and :func:`user_message_with` puts them after the prompt's ``input_text`` in one user message item::

    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": …}, *parts]}

:func:`image_item` accepts a matplotlib Figure (or Axes), a PIL Image, raw image bytes or an image file
path; :func:`file_item` any file path; :func:`resolve` turns what the user typed (a variable name, else a
path) into the object. Each builder returns ``(item, label, size)``: the content part, a short human label for
the status line and the size in bytes before base64. Errors are :class:`AttachmentError` (a
``ConfigError``) saying what is accepted, or the size limit (:data:`DEFAULT_MAX_BYTES`).

:class:`Attachment` is the record a status line shows ("attached df (1.2 KB)"), for data summaries as well.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "IMAGE_TYPES",
    "Attachment",
    "AttachmentError",
    "format_size",
    "image_item",
    "file_item",
    "part_for",
    "resolve",
    "user_message_with",
]

#: Largest file or encoded image sent inline (before base64), in bytes.
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

#: Image file extensions accepted by :func:`image_item`, with their MIME types.
IMAGE_TYPES: Mapping[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}

_ACCEPTED_IMAGES = (
    "a matplotlib Figure or Axes, a PIL Image, PNG/JPEG/GIF/WebP bytes, or a .png/.jpg/.jpeg/.gif/.webp file"
)


class AttachmentError(ConfigError):
    """An image or file cannot be attached: missing, of a kind not accepted, or too large."""

    default_hint = ""


@dataclass(frozen=True)
class Attachment:
    """What went into a prompt besides its text: *name* as the user wrote it, *kind* ("pandas DataFrame",
    "image/png"…) and *size* (characters of a data summary, bytes of an image or file)."""

    name: str
    kind: str
    size: int

    @property
    def label(self) -> str:
        """``"df (1.2 KB)"``: for a status line such as ``attached df (1.2 KB)``."""
        return f"{self.name} ({format_size(self.size)})"


def format_size(n: int) -> str:
    """``"850 B"``, ``"1.2 KB"``, ``"3.4 MB"`` (powers of 1024)."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.1f}".removesuffix(".0") + f" {unit}"


def _sniff_image(data: bytes) -> str | None:
    """The image MIME type told by *data*'s first bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _check_size(size: int, what: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise AttachmentError(
            f"{what} is {format_size(size)}, over the {format_size(max_bytes)} limit for an attachment.",
            hint="Attach a smaller file (or a lower-resolution image).",
        )


def _read(path: Path, max_bytes: int) -> bytes:
    """The bytes of *path*, with clear errors for a missing path, a directory or a file over the limit."""
    if not path.exists():
        raise AttachmentError(
            f"No file {str(path)!r} to attach.", hint="Check the path (or the variable's name)."
        )
    if not path.is_file():
        raise AttachmentError(f"{str(path)!r} is not a file; attach a file, not a directory.")
    _check_size(path.stat().st_size, repr(str(path)), max_bytes)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AttachmentError(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None


def _png_of(obj: Any) -> tuple[bytes, str] | None:
    """PNG bytes and a label for a matplotlib Figure/Axes or a PIL Image; None for other objects."""
    figure = obj if callable(getattr(obj, "savefig", None)) else None
    if figure is None and callable(getattr(getattr(obj, "figure", None), "savefig", None)):
        figure = obj.figure  # an Axes
    if figure is not None:
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi="figure")
        width, height = (round(x) for x in figure.get_size_inches() * figure.dpi)
        return buf.getvalue(), f"{type(figure).__name__} {width}×{height} PNG"
    if callable(getattr(obj, "save", None)) and hasattr(obj, "mode") and hasattr(obj, "size"):
        buf = io.BytesIO()
        try:
            obj.save(buf, format="PNG")
        except (OSError, ValueError, KeyError):  # a mode PNG cannot hold (CMYK, …)
            buf = io.BytesIO()
            obj.convert("RGBA").save(buf, format="PNG")
        width, height = obj.size
        return buf.getvalue(), f"image {width}×{height} PNG"
    return None


def image_item(
    obj_or_path: Any, *, detail: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[dict[str, Any], str, int]:
    """An ``input_image`` content part for *obj_or_path*: ``(item, label, size in bytes)``.

    Figures and PIL images are sent as PNG (a Figure at its own size and dpi); bytes and files as they are,
    their type read from the magic bytes (a file's extension must also be one of :data:`IMAGE_TYPES`).
    """
    png = _png_of(obj_or_path)
    if png is not None:
        data, label = png
        mime = "image/png"
        _check_size(len(data), label, max_bytes)
    elif isinstance(obj_or_path, bytes | bytearray | memoryview):
        data = bytes(obj_or_path)
        mime_or_none = _sniff_image(data)
        if mime_or_none is None:
            raise AttachmentError(
                f"These bytes are not a PNG, JPEG, GIF or WebP image. Accepted: {_ACCEPTED_IMAGES}."
            )
        mime = mime_or_none
        label = f"image bytes ({mime.split('/')[1].upper()})"
        _check_size(len(data), label, max_bytes)
    elif isinstance(obj_or_path, str | os.PathLike):
        path = Path(obj_or_path).expanduser()
        ext = path.suffix.lower()
        if ext not in IMAGE_TYPES:
            raise AttachmentError(
                f"{str(path)!r} is not an image this can attach. Accepted: {_ACCEPTED_IMAGES}.",
                hint="Attach other files as files (input_file), e.g. a PDF.",
            )
        data = _read(path, max_bytes)
        sniffed = _sniff_image(data)
        if sniffed is None:
            raise AttachmentError(
                f"{str(path)!r} does not look like a {ext[1:].upper()} image (its bytes say otherwise)."
            )
        mime, label = sniffed, path.name
    else:
        raise AttachmentError(
            f"Cannot attach a {type(obj_or_path).__name__} as an image. Accepted: {_ACCEPTED_IMAGES}."
        )
    item = {"type": "input_image", "image_url": _data_url(mime, data), "detail": detail}
    return item, label, len(data)


def file_item(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[dict[str, Any], str, int]:
    """An ``input_file`` content part with *path*'s bytes inline: ``(item, label, size in bytes)``.

    The MIME type comes from the extension (``mimetypes``), then the magic bytes of a PDF or an image, else
    ``application/octet-stream``. The API decides which file types a model reads (PDFs, text…).
    """
    if not isinstance(path, str | os.PathLike):
        raise AttachmentError(
            f"Cannot attach a {type(path).__name__} as a file. "
            "Accepted: a path (str or pathlib.Path) to a file."
        )
    p = Path(path).expanduser()
    data = _read(p, max_bytes)
    mime = mimetypes.guess_type(p.name)[0]
    if mime is None:
        mime = (
            "application/pdf"
            if data.startswith(b"%PDF-")
            else _sniff_image(data) or "application/octet-stream"
        )
    item = {"type": "input_file", "filename": p.name, "file_data": _data_url(mime, data)}
    return item, p.name, len(data)


def part_for(value: Any, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, Any], str, int]:
    """An image part for figures, images, image bytes and image files; a file part for any other path."""
    if isinstance(value, str | os.PathLike) and Path(value).suffix.lower() not in IMAGE_TYPES:
        return file_item(value, max_bytes=max_bytes)
    return image_item(value, max_bytes=max_bytes)


def resolve(name_or_path: str, namespace: Mapping[str, Any]) -> Any:
    """The variable *name_or_path* of the user's namespace if there is one, else the existing file it names
    (a :class:`~pathlib.Path`). Raises :class:`AttachmentError` naming both places it looked."""
    if name_or_path in namespace:
        return namespace[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    looked = f"no variable {name_or_path!r} in the notebook and " if name_or_path.isidentifier() else ""
    raise AttachmentError(
        f"Nothing to attach for {name_or_path!r}: {looked}no file {str(path)!r}.",
        hint="Name a variable holding a figure or image, or the path of an existing file.",
    )


def user_message_with(text: str, parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The user message item: the prompt's ``input_text`` (left out when *text* is empty) then *parts*."""
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}] if text else []
    content += [dict(p) for p in parts]
    return {"type": "message", "role": "user", "content": content}
