"""Image files from strangers: read safely, or refused in one line (lessons 4, 8, 9).

Plumbing, not a lesson: lesson 4 teaches how a photo becomes an MNIST digit
(dl_utils.digit_from_gray); this module opens the file first. Only PNG and JPEG are
ever decoded, the pixel count is checked from the header before decoding, 16-bit and
transparent images are turned into 8-bit grey correctly, and a folder of class
subfolders is scanned with every unusable file skipped by name (lesson 8).
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from _course.files import FriendlyError, display_path

__all__ = [  # what dl_utils re-exports
    "MAX_IMAGE_PIXELS", "IMAGE_FORMATS", "ImageTooLarge", "read_grayscale",
    "to_grayscale", "IMAGE_SUFFIXES", "class_folders", "readable", "scan_image_folder",
    "keep_preparable", "read_digit_folder", "uci_8x8", "counts_to_image", "CANVAS",
    "thicken", "draw_like_a_canvas", "write_digit_pngs",
]

# --------------------------------------------------------------------------------------
# A learner's own image of a digit, made to look like MNIST (taught in 04_load_model.py;
# lessons 8 and 9 use it for folders of photos and for drawings sent to a server)
# --------------------------------------------------------------------------------------
MAX_IMAGE_PIXELS = 50_000_000  # a 48-megapixel phone photo fits; larger is refused
# Only these formats are ever decoded. Pillow can open dozens; some of them run other
# programs (an EPS file makes Pillow call Ghostscript), which a file from a stranger
# must never be able to do. Pillow's own security notes say to block such input.
IMAGE_FORMATS = ("PNG", "JPEG")


class ImageTooLarge(FriendlyError):  # noqa: N818 (the name says what happened)
    """An image with more pixels than we agree to decode (lesson 9 answers it with
    413)."""


def read_grayscale(path, name=None, max_pixels=MAX_IMAGE_PIXELS) -> Image.Image:
    """Open a PNG or JPEG (a path or a file object) as 8-bit grey levels; one clear
    error for anything unusable. `name`: how errors call it (default: the path).

    The size is checked from the header, before the pixels are decoded: a 240-megapixel
    image would take gigabytes of memory (Pillow itself refuses such "decompression
    bombs"). formats= makes Pillow refuse every other format without trying to decode
    it.
    """
    name = name or f"image {path}"
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            if image.width * image.height > max_pixels:
                raise ImageTooLarge(
                    f"{name} is too large ({image.width}x{image.height} pixels, over "
                    f"{max_pixels / 1e6:g} megapixels): scale it down first")
            return to_grayscale(ImageOps.exif_transpose(image))  # turned upright
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"{name} is too large: {err}") from err
    except UnidentifiedImageError as err:
        raise FriendlyError(f"cannot read {name}: not a PNG or JPEG image") from err
    except (OSError, ValueError, SyntaxError) as err:  # damaged, truncated...
        raise FriendlyError(f"cannot read {name}: {err}") from err


def to_grayscale(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit grey levels (mode "L"), whatever it was stored as.

    convert("L") alone gets two kinds of file wrong. 16-bit grey (mode "I;16", 0-65535)
    would be clipped at 255, turning almost every pixel white: we scale instead. A
    transparent background (RGBA, or a palette with a transparent colour) has arbitrary
    colours under the transparency: we lay the image on white paper first.
    """
    if image.mode.startswith("I"):  # 16- or 32-bit integer grey levels
        a = np.asarray(image, dtype=np.float64)
        top = 65535 if image.mode.startswith("I;16") or a.max() > 255 else 255
        return Image.fromarray((a * (255 / top)).round().clip(0, 255).astype(np.uint8))
    if image.mode == "F":  # 32-bit float grey levels, assumed in 0-255
        return Image.fromarray(np.asarray(image).round().clip(0, 255).astype(np.uint8))
    if "A" in image.mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"),
                                     rgba).convert("L")
    return image.convert("L")


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}  # the files IMAGE_FORMATS can hold


def class_folders(root: Path, max_classes: int) -> list[Path]:
    """The class subfolders of `root`, sorted by name (as ImageFolder sorts them)."""
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "does not exist"
        raise FriendlyError(f"{root} {problem}: give a folder of class subfolders")
    classes = sorted((p for p in root.iterdir()
                      if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    if not classes:
        raise FriendlyError(
            f"{root} has no class subfolders: put each class's images in a subfolder "
            "named after the class (0/, 1/, ... 9/ for digits)")
    if len(classes) > max_classes:
        raise FriendlyError(f"{root} has {len(classes)} class subfolders; the "
                            f"course's models have {max_classes} outputs")
    return classes


def readable(path: Path) -> str | None:
    """None if `path` is an image we can read, else why not (one line that names the
    file)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        kind = path.suffix or "no extension"
        return f"{display_path(path)} is not an image file ({kind})"
    try:  # decoded once in full: a truncated file fails here, not in the middle of an
        # epoch
        read_grayscale(path)
    except FriendlyError as err:  # unreadable, damaged, or too large
        return str(err)
    return None


def scan_image_folder(root: Path, max_classes: int = 10):
    """(class names, [(path, class index)]) of every readable image, warnings printed
    (08).

    A file that is not an image, or is damaged, is skipped with a warning that names it:
    one bad file should not stop a run over hundreds of good ones. An empty class
    folder is kept as a class (so that the class indices do not shift), with a warning.
    """
    classes, samples = [], []
    for index, folder in enumerate(class_folders(Path(root), max_classes)):
        classes.append(folder.name)
        found = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            problem = readable(path)
            if problem:
                print(f"  warning, skipped: {problem}")
                continue
            samples.append((path, index))
            found += 1
        if not found:
            print(f"  warning: class folder {display_path(folder)} has no images")
    if not samples:
        raise FriendlyError(f"no readable images in the class folders of {root}")
    return classes, samples


def keep_preparable(samples, transform):
    """The (path, class) samples whose image `transform` can prepare (lesson 8): one it
    cannot, such as a blank photo with no digit to find, is skipped with a warning that
    names it, instead of stopping the run in the middle of an epoch."""
    kept = []
    for path, target in samples:
        try:
            transform(read_grayscale(path))
            kept.append((path, target))
        except FriendlyError as err:
            print(f"  warning, skipped: {display_path(path)}: {err}")
    if not kept:
        raise FriendlyError("no image of the folder could be prepared")
    return kept


def read_digit_folder(root: Path, prepare):
    """A folder of digits (one subfolder per digit, lesson 8's format) decoded once into
    memory (lesson 8b): (X uint8 [N, 28, 28], y int64 [N], paths).
    `prepare(image, name)` turns a grey PIL image into a 28x28 uint8 array, or raises
    FriendlyError to have that image skipped, by name. Class folders must be named
    0 to 9: y is the digit."""
    classes, samples = scan_image_folder(Path(root))
    if not all(len(name) == 1 and name.isdigit() for name in classes):
        raise FriendlyError(f"the class folders of {display_path(root)} are {classes}: "
                            "a folder of digits has subfolders named 0 to 9")
    images, labels, paths = [], [], []
    for path, index in samples:
        try:
            images.append(prepare(read_grayscale(path), display_path(path)))
        except FriendlyError as err:
            print(f"  warning, skipped: {display_path(path)}: {err}")
            continue
        labels.append(int(classes[index]))
        paths.append(path)
    if not images:
        raise FriendlyError(f"no image of {display_path(root)} could be prepared")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels), paths


def uci_8x8(digit: np.ndarray) -> np.ndarray:
    """A 28x28 digit as the UCI handwritten digits were made (scikit-learn's
    load_digits): binarized, its box scaled to fill 32x32 (aspect kept, centred), then
    the ink pixels counted in 4x4 blocks: 8x8 counts, 0 to 16 (06 and
    benchmarks/writer_shift.py)."""
    ink = digit >= 128
    rows, cols = np.nonzero(ink)
    if not len(rows):
        return np.zeros((8, 8), dtype=np.int64)
    box = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = box.shape
    scale = 32 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    big = np.asarray(Image.fromarray(box.astype(np.uint8) * 255).resize(
        size, Image.Resampling.NEAREST)) >= 128
    frame = np.zeros((32, 32), dtype=bool)
    top, left = (32 - big.shape[0]) // 2, (32 - big.shape[1]) // 2
    frame[top:top + big.shape[0], left:left + big.shape[1]] = big
    return frame.reshape(8, 4, 8, 4).sum(axis=(1, 3))


def counts_to_image(counts: np.ndarray) -> Image.Image:
    """8x8 ink counts (0-16) as an 8-bit grey image, for the course's digit
    preparation."""
    return Image.fromarray((np.asarray(counts) * (255 / 16)).round().astype(np.uint8))


CANVAS = 280  # lesson 9's drawing pad, in pixels (10x MNIST's 28)


def thicken(ink: np.ndarray, width: int) -> np.ndarray:
    """Each pixel the brightest in the width x width square around it (a dilation: every
    stroke grows by width // 2 pixels each way). Pillow's MaxFilter(width) gives the
    same pixels, but reads all width^2 neighbours of every pixel; a square's maximum is
    the maximum along rows, then along columns: 2 x width reads, 6x as fast at
    width 9."""
    r, (h, w) = width // 2, ink.shape
    padded = np.pad(ink, r)  # zeros outside: never brighter than the edge pixel already
    # read
    rows = padded[:, :w].copy()
    for i in range(1, width):
        np.maximum(rows, padded[:, i:i + w], out=rows)
    out = rows[:h].copy()
    for i in range(1, width):
        np.maximum(out, rows[i:i + h], out=out)
    return out


def draw_like_a_canvas(digit: np.ndarray, rng, rotate: float = 0) -> Image.Image:
    """An MNIST digit as someone would draw it on lesson 9's pad (08 and 09 use it).

    A pen draws solid strokes of one width, at any size, anywhere: so the digit is
    turned by `rotate` degrees (anticlockwise), scaled to a random size, made solid (on
    or off, no soft grey), thickened by a random amount, pasted at a random place on
    a 280x280 pad, dark on white (one in five light on black). An RGBA image, as
    a canvas gives it.
    """
    size = int(rng.integers(90, CANVAS + 1))  # the digit's 20x20 box becomes 64-200 px
    upright = Image.fromarray(digit)
    if rotate:
        upright = upright.rotate(rotate, resample=Image.Resampling.BILINEAR)
    big = upright.resize((size, size), Image.Resampling.BILINEAR)
    ink = ((np.asarray(big) > 100) * 255).astype(np.uint8)
    width = int(rng.choice([1, 3, 5, 7, 9]))  # how much thicker than MNIST's own
    # strokes
    ink = Image.fromarray(thicken(ink, width))
    pad = Image.new("L", (CANVAS, CANVAS), 255)
    x, y = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
    pad.paste(0, (x, y, x + size, y + size), mask=ink)
    if rng.random() < 0.2:
        pad = Image.eval(pad, lambda v: 255 - v)
    return pad.convert("RGBA")


def write_digit_pngs(folder, digits, rotate=None) -> Path:
    """(digit, index, 28x28 uint8) triples as <folder>/<digit>/<index>.png, as stored
    or, with a `rotate`, drawn on a pad turned by that many degrees (draw_like_a_canvas,
    the same drawings every time). Written to a temporary folder renamed when complete:
    an interrupted export is never taken for a finished one."""
    folder = Path(folder)
    rng = np.random.default_rng(0)
    tmp = folder.with_name(folder.name + ".tmp")
    for digit, i, pixels in digits:
        (tmp / str(digit)).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels)
        if rotate is not None:
            image = draw_like_a_canvas(pixels, rng, rotate).convert("L")
        image.save(tmp / str(digit) / f"{i:05d}.png")
    tmp.rename(folder)
    print(f"Exported {len(digits)} MNIST validation images as PNG files to "
          f"{display_path(folder)}" + (f", drawn on a pad, turned {rotate:g} degrees"
                                      if rotate is not None else ""))
    return folder
