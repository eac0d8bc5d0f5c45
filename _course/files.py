"""Files: where the course reads and writes, its one kind of error, and writing safely.

Plumbing, not a lesson: no lesson teaches what is here, and you need not read it to
follow the course. dl_utils re-exports all of it, so lessons write dl_utils.MODELS_DIR
or dl_utils.FriendlyError. Every script relies on it: the paths (anchored to the
repository, or moved by $DL_OUTPUT_DIR), FriendlyError (one line for the learner, never
a traceback), MNIST's files checked by size, magic number and md5 before use (02 shows
the format), and atomic writes, so that a crash or Ctrl-C never leaves half a file
behind.
"""

import contextlib
import glob
import gzip
import hashlib
import math
import os
from pathlib import Path

import torch

__all__ = [  # what dl_utils re-exports
    "ROOT", "DATA_DIR", "OUTPUT_DIR", "MODELS_DIR", "FIGURES_DIR", "RESULTS_DIR",
    "MNIST_FILES", "FriendlyError", "display_path", "IDX_MAGIC", "prepare_mnist",
    "download_mnist", "extract_gz", "idx_dims", "read_idx", "check_idx_file", "md5sum",
    "check_file", "remove_stale_temporaries", "atomic_path",
]

# Paths are anchored to this file, not to the current directory, so every script works
# whether you start it as `python 03_train_mnist.py` or `python ~/dl/03_train_mnist.py`.
# Outputs go under the repository too, or under $DL_OUTPUT_DIR when it is set (the tests
# set it, so that they never overwrite the models and figures of your own runs).
ROOT = Path(__file__).resolve().parent.parent  # the repository (this file:
# _course/files.py)
DATA_DIR = ROOT / "data"  # the shipped MNIST files live in data/MNIST/raw/
OUTPUT_DIR = Path(os.environ.get("DL_OUTPUT_DIR") or ROOT).resolve()
MODELS_DIR = OUTPUT_DIR / "models"  # checkpoints written by 03 and 06
FIGURES_DIR = OUTPUT_DIR / "figures"  # every plot is saved here as PNG
RESULTS_DIR = OUTPUT_DIR / "results"  # measured numbers (05's comparison, the
# benchmark)

# The four MNIST files: uncompressed size in bytes and md5 (see data/README.md).
MNIST_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}


class FriendlyError(Exception):
    """A problem the learner can fix; its message says what went wrong and what to
    do."""


def display_path(path: Path) -> str:
    """A path as the learner would type it: relative to the repository when inside
    it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --------------------------------------------------------------------------------------
# File plumbing: MNIST's IDX files, checked before use; atomic writes
# --------------------------------------------------------------------------------------
IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803: 3-D uint8 array; 0x0801: 1-D


def prepare_mnist(root: Path = DATA_DIR, files: dict = MNIST_FILES) -> Path:
    """Make sure root/MNIST/raw/ holds the four uncompressed files, intact; return that
    folder.

    Order of preference: the uncompressed files (checked), then the shipped .gz files
    (extracted once), then torchvision's download.
    """
    raw = Path(root) / "MNIST" / "raw"
    if any(not (raw / n).exists() and not (raw / f"{n}.gz").exists() for n in files):
        try:
            download_mnist(Path(root))
        except Exception as err:  # offline: URLError, RuntimeError, socket errors...
            raise FriendlyError(
                f"MNIST is missing from {raw} and the download failed "
                f"({type(err).__name__}); put the four files "
                f"{', '.join(n + '.gz' for n in files)} into {raw}"
            ) from err
    for name, (size, md5) in files.items():
        if not (raw / name).exists():
            extract_gz(raw / f"{name}.gz", raw / name)
        check_file(raw / name, size, md5)
    return raw


def download_mnist(root: Path) -> None:
    """Fall back on torchvision's download (needs a network connection)."""
    from torchvision import datasets

    for train in (True, False):
        datasets.MNIST(root, train=train, download=True)


def extract_gz(gz_path: Path, out_path: Path) -> None:
    try:
        with gzip.open(gz_path, "rb") as src, atomic_path(out_path) as tmp:
            tmp.write_bytes(src.read())
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise FriendlyError(
            f"cannot decompress {gz_path} ({err}); restore it with "
            "`git checkout data/` or delete it to download MNIST again"
        ) from err


def idx_dims(header: bytes) -> list[int]:
    """The dimensions an IDX header declares: the magic number's 4th byte counts
    them."""
    return [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big")
            for i in range(header[3])]


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (checked by check_idx_file) as a uint8 tensor of the shape its header
    gives.

    torchvision's datasets.MNIST reads these same files, and the tests check that it
    gets identical tensors. We read them ourselves because importing torchvision costs
    over a second per script on a 2-core machine (make bench measures it), more than
    reading all the data.
    """
    data = path.read_bytes()
    dims = idx_dims(data)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8,
                            offset=4 + 4 * len(dims)).view(dims)


def check_idx_file(path: Path) -> None:
    """Check an IDX file's header: magic number, and a size that matches its dimensions.

    IDX is MNIST's format: 4 bytes of magic (0, 0, dtype 0x08 = uint8, number of dims),
    one big-endian uint32 per dimension, then the raw bytes (one per pixel or label).
    """
    kind = "images" if "images" in path.name else "labels"
    with open(path, "rb") as f:
        header = f.read(16)  # magic + up to 3 dimensions; the data is not needed here
    magic = int.from_bytes(header[:4], "big")
    if magic != IDX_MAGIC[kind]:
        raise FriendlyError(f"{path} is not an MNIST {kind} file "
                            f"(magic number {magic}, expected {IDX_MAGIC[kind]}); "
                            "delete it and run again")
    dims = idx_dims(header)
    expected = 4 + 4 * len(dims) + math.prod(dims)
    if path.stat().st_size != expected:
        raise FriendlyError(f"{path} is truncated or damaged "
                            f"({path.stat().st_size:,} bytes, its header promises "
                            f"{expected:,}); delete it and run again: it will be "
                            "re-extracted from the .gz or re-downloaded")


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, size: int | None, md5: str | None) -> None:
    """Header, size and md5 of one uncompressed file; a clear error names file and
    fix."""
    check_idx_file(path)
    fix = ("delete it and run again: it will be re-extracted from the .gz or "
           "re-downloaded")
    if size is not None and path.stat().st_size != size:
        raise FriendlyError(f"{path} has {path.stat().st_size:,} bytes, "
                            f"expected {size:,}; {fix}")
    if md5 is not None and md5sum(path) != md5:
        raise FriendlyError(f"{path} fails its md5 check (altered or damaged); {fix}")


def remove_stale_temporaries(path: Path) -> None:
    """Temporaries of `path` left by a writer killed outright (SIGKILL, a power cut):
    those whose process is gone. (POSIX only: elsewhere there is no harmless liveness
    check.)"""
    if os.name != "posix":
        return
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-4]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, OSError):
            pass  # not ours, or a live process of another user


@contextlib.contextmanager
def atomic_path(path: Path):
    """Context manager: write to a temporary file beside `path`, then rename it into
    place.

    os.replace is atomic on one file system, so a reader, a crash of the program or
    Ctrl-C sees either the old complete file or the new complete file, never half of
    one. os.fsync first forces the new bytes onto the disk: without it, a power cut
    just after the rename could leave the new name pointing at data the disk never
    received. (Making the rename itself survive a power cut would also need an fsync of
    the folder; we stop here.) A file that cannot be written becomes one clear error.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a folder that is a file, no permission, a full disk...
        raise FriendlyError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
