"""Lesson 8: your own images, the standard PyTorch way (Dataset, DataLoader,
transforms).

So far every lesson has sliced its batches out of tensors held in memory: the fastest
way for MNIST, and not how a real project starts. A real project starts with a folder
of image files. This lesson takes such a folder, one subfolder per class:

    my_digits/
        0/  img001.png  img002.jpg ...
        1/  ...   (and so on, to 9/)

and walks the standard road from files to batches: a Dataset written by hand (then the
same with torchvision's ImageFolder), transforms (torchvision.transforms.v2), and a
DataLoader (batching, shuffling, collate, worker processes, pinned memory). Then it uses
the folder: the course's trained models are scored on it, digit by digit. Lesson 8b
fine-tunes the CNN on part of the same folder and measures what that fixes and costs.

By default the folder is made for you (offline): MNIST validation images (never test
images: lesson 8b trains on part of the folder), drawn the way lesson 9's pad draws them
and turned 30 degrees, like a page photographed with the camera held askew (a rotation;
a writer's slant would be a shear, the baseline level and the strokes leaning): a shift
the course's models never saw. They are exported as PNG files to data/mnist_png/. Point
--folder at your own photographed digits (the README says how to make them), or at any
small image set with 10 classes or fewer.

Run it (after 03 and 06, whose models it evaluates):
    python 08_your_own_images.py                       # the exported MNIST sample
    python 08_your_own_images.py --rotate 0            # ...drawn upright: little to fix
    python 08_your_own_images.py --folder ~/my_digits  # your own images
    python 08_your_own_images.py --per-class 100       # a larger export
Then: python 08b_fine_tuning.py (the same folder: fine-tuning, and forgetting).
Exercises: exercises/ex08_own_images.py, checked by python exercises/check.py 08
"""

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
EXPORT_DIR = dl_utils.OUTPUT_DIR / "data" / "mnist_png"  # the default folder, made once
PER_CLASS = 50  # images per digit in the export: 500 files, a few seconds to read
ROTATE = 30  # degrees the exported digits are turned: the shift fine-tuning fixes (8b)
BATCH_SIZE = 32  # a small folder: small batches still give several steps per epoch
MAX_SHIFT = 2  # the training transform's augmentation: lesson 6's shifts (RandomCrop)
PREPROCESS = "auto"  # photo: 04's digit preparation; mnist: as is; auto: decide per
# image
SEED = 0
CNN_CHECKPOINT = dl_utils.MODELS_DIR / "cnn.pt"  # what lesson 6 saves
MLP_CHECKPOINT = dl_utils.MODELS_DIR / "simple_nn.pt"  # what lesson 3 saves
MAX_CLASSES = 10  # the course's models have 10 outputs


# ---- 1. A folder of images, and a Dataset written by hand ----------------------------
class ImageFolderDataset(Dataset):
    """A map-style Dataset over image files: what torchvision's ImageFolder does, by
    hand.

    A Dataset needs two methods. __len__: how many samples. __getitem__(i): sample i,
    here (image tensor, label). The constructor only lists the files; each image is read
    from disk when it is asked for ("lazy" loading), so a folder larger than memory
    works, and worker processes can read different images at the same time.
    """

    def __init__(self, samples, transform=None, target_transform=None):
        self.samples = list(samples)  # [(path, class index)], from
        # dl_utils.scan_image_folder
        self.transform, self.target_transform = transform, target_transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, target = self.samples[i]
        image = dl_utils.read_grayscale(path)  # any mode (RGBA, 16-bit...) -> 8-bit
        # grey
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


# ---- 2. Transforms: from a PIL image to the tensor the model expects -----------------
class PrepareDigit:
    """A transform (PIL image -> 28x28 PIL image): lesson 4's preparation, for photos.

    A model only works on inputs that look like its training images: a photo (large,
    dark ink on light paper, anywhere) becomes MNIST's 28x28 light-on-black digit,
    centred by mass (lesson 4's digit_from_gray). In "auto" mode an image already in
    MNIST's format passes unchanged. A class, not a lambda: DataLoader workers may need
    to pickle it.
    """

    def __init__(self, mode=PREPROCESS):
        self.mode = mode

    def __repr__(self):  # how Compose prints it
        return f"PrepareDigit(mode={self.mode!r})"

    def __call__(self, image):
        if self.mode == "mnist" or (self.mode == "auto" and looks_like_mnist(image)):
            return image
        return Image.fromarray(dl_utils.digit_from_gray(image))


def looks_like_mnist(image) -> bool:
    """28x28 with a dark border (all four sides): already in MNIST's format."""
    if image.size != (28, 28):
        return False
    g = v2.functional.pil_to_tensor(image.convert("L"))[0]  # [28, 28] grey levels
    return torch.cat([g[0], g[-1], g[:, 0], g[:, -1]]).median() < 128


def make_transforms(mode=PREPROCESS, max_shift=MAX_SHIFT):
    """(evaluation transform, training transform): the same steps, plus augmentation.

    In order: prepare the digit (photos only); grey levels (a no-op kept as a safety
    net); resize to 28x28; PIL image -> uint8 tensor [1, 28, 28] -> float32 in [0, 1];
    subtract the training mean, divide by the std, as dl_utils.normalize does. Training
    adds a random shift of up to max_shift pixels (RandomCrop from a black-padded image:
    lesson 6's augmentation, the standard way). Evaluation has no randomness: the same
    image must always get the same answer.
    """
    def steps(augment):
        return v2.Compose([
            PrepareDigit(mode),
            v2.Grayscale(num_output_channels=1),
            v2.Resize((28, 28), antialias=True),
            *([v2.RandomCrop(28, padding=max_shift, fill=0)]
              if augment and max_shift else []),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([dl_utils.MNIST_MEAN], [dl_utils.MNIST_STD]),
        ])
    return steps(False), steps(True)


class DigitLabel:
    """target_transform: class index -> the digit its folder is named after (0-9).

    ImageFolder numbers classes 0, 1, 2... in sorted order: with some digits missing
    (only 3/, 5/, 8/) that is not the digit, which the course's models output.
    """

    def __init__(self, classes):
        self.digits = [int(name) for name in classes]

    def __call__(self, index):
        return self.digits[index]


def digit_classes(classes) -> bool:
    return all(len(name) == 1 and name in "0123456789" for name in classes)


# ---- 3. The DataLoader: from samples to batches --------------------------------------
def make_loader(dataset, batch_size, device, shuffle=False, generator=None,
                num_workers=0):
    """A DataLoader: batches of `batch_size` samples, stacked by its collate function.

    shuffle=True draws a new order every epoch from `generator` (seeded: the same order
    on every run and every device). The default collate function turns a list of
    (image [1, 28, 28], label) pairs into one image tensor [B, 1, 28, 28] and one label
    tensor [B]; write your own collate_fn for samples that do not stack (images of
    different sizes, text of different lengths). num_workers: see loader_section. With
    CUDA, pin_memory puts each batch in page-locked memory, from which a GPU copies
    faster. A loop that then copies with .to(device, non_blocking=True) lets the copy
    run while the GPU computes; this lesson's loops use plain .to(device), so on a GPU
    they gain the faster copy only (on the CPU pin_memory is off: there is nothing to
    copy).
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                      generator=generator, num_workers=num_workers,
                      pin_memory=torch.device(device).type == "cuda")


# ---- 4. Using it: the course's models on the folder, then fine-tuning ----------------
def per_class_table(probs, y):
    """Accuracy (= recall), precision and count per class, from a confusion matrix."""
    cm = dl_utils.confusion_matrix(probs, y)
    rows = []
    for digit in sorted(set(y.tolist())):
        right, said = cm[digit, digit].item(), cm[:, digit].sum().item()
        total = cm[digit].sum().item()
        precision = f"{100 * right / said:.1f}" if said else "(never said)"
        rows.append([digit, total, f"{100 * right / total:.1f}", precision])
    dl_utils.print_table(["digit", "images", "recall % (its images found)",
                          "precision % (its predictions right)"], rows)


def evaluate_course_model(name, path, loader, device, show):
    """A trained checkpoint of the course, evaluated on the folder; None if not trained
    yet."""
    if not Path(path).exists():
        print(f"\nNo {dl_utils.display_path(path)} yet: run 03_train_mnist.py "
              "(MLP) and 06_convolutional_network.py (CNN) first.")
        return None
    model = dl_utils.load_checkpoint(path, device=device)[0]
    probs, y = dl_utils.predict_all(model, loader, device)
    acc = (probs.argmax(dim=1) == y).float().mean().item()
    print(f"\n{name} ({dl_utils.display_path(path)}): "
          f"{dl_utils.format_accuracy(acc, len(y))} on {len(y)} images")
    per_class_table(probs, y)
    return model, probs, y


def plot_batch(X, y, show):
    """One batch as the model receives it (after the transforms), drawn."""
    pixels = dl_utils.to_pixels(X)
    cols = 8
    fig, axes = dl_utils.image_grid(-(-len(pixels) // cols), cols, (1.2, 1.4))
    for ax, image, label in zip(axes.flat, pixels, y.tolist()):
        ax.imshow(image.numpy(), cmap="gray")  # matplotlib takes NumPy, not tensors
        ax.set_title(str(label), fontsize=8)
    fig.suptitle("One shuffled training batch from the DataLoader, after the training "
                 "transform (as grey levels)")
    dl_utils.save_figure(fig, "08_batch.png", show)


# ---- The lesson ----------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--folder", default=None,
                        help="a folder with one subfolder of images per class "
                             "(default: the MNIST sample exported to "
                             f"{dl_utils.display_path(EXPORT_DIR)})")
    parser.add_argument("--per-class", type=dl_utils.positive_int,
                        default=PER_CLASS,
                        help="images per digit in the exported sample "
                             "(default: %(default)s)")
    parser.add_argument("--rotate", type=float, default=ROTATE,
                        help="degrees the exported sample's digits are turned "
                             "(a rotation, as a camera held askew), drawn on a pad "
                             "(default: %(default)s)")
    parser.add_argument("--preprocess", choices=["auto", "photo", "mnist"],
                        default=PREPROCESS,
                        help="photo: lesson 4's digit preparation (crop, invert, "
                             "centre); mnist: images are already 28x28 light-on-dark; "
                             "auto: decide per image (default: %(default)s)")
    parser.add_argument("--batch-size", type=dl_utils.positive_int,
                        default=BATCH_SIZE,
                        help="images per batch (default: %(default)s)")
    parser.add_argument("--max-shift", type=int, choices=range(0, 5),
                        default=MAX_SHIFT,
                        help="the training transform's augmentation: random shift "
                             "in pixels (default: %(default)s)")
    parser.add_argument("--cnn", default=str(CNN_CHECKPOINT),
                        help=f"the CNN to evaluate and fine-tune (default: "
                             f"{dl_utils.display_path(CNN_CHECKPOINT)})")
    parser.add_argument("--mlp", default=str(MLP_CHECKPOINT),
                        help="the MLP to evaluate (default: "
                             f"{dl_utils.display_path(MLP_CHECKPOINT)})")
    dl_utils.add_common_args(parser, seed=SEED)
    args = parser.parse_args(argv)
    if not -90 <= args.rotate <= 90:  # (also refuses nan)
        parser.error("--rotate must be between -90 and 90 degrees")
    return args


def the_folder(args):
    """The folder to work on (exported if it is the default), scanned: classes,
    samples."""
    folder = (Path(args.folder).expanduser() if args.folder
              else dl_utils.export_mnist_pngs(
                  EXPORT_DIR / (f"validation_{args.per_class}_per_digit_drawn_"
                                f"rotated_{args.rotate:g}"),
                  args.per_class, args.rotate))
    print(f"Folder: {dl_utils.display_path(folder)}")
    # Class folders sorted by name (as ImageFolder sorts them), hidden ones skipped;
    # every image decoded once, and a damaged or non-image file skipped with a warning
    # naming it
    classes, samples = dl_utils.scan_image_folder(folder, MAX_CLASSES)
    counts = [sum(1 for _, c in samples if c == i) for i in range(len(classes))]
    dl_utils.print_table(["class folder", "images"],
                         [[n, c] for n, c in zip(classes, counts)])
    return folder, classes, samples


def hand_written_dataset(samples, classes, eval_t):
    """The Dataset by hand: its length, and one sample, looked at closely."""
    target_t = DigitLabel(classes) if digit_classes(classes) else None
    dataset = ImageFolderDataset(samples, eval_t, target_t)
    X, y = dataset[0]
    print(f"len(dataset) = {len(dataset)}; dataset[0] = (image, label) with image "
          f"{list(X.shape)} {X.dtype}, values {X.min():.2f}..{X.max():.2f}, "
          f"label {y} (from {dl_utils.display_path(samples[0][0])})")
    print(f"(The image is a torchvision {type(X).__name__}: a Tensor subclass that "
          "tells v2 transforms it is an image.)")
    return dataset


def loader_section(samples, classes, transforms, args, device, generator):
    """Batches: shapes, the collate step, a training batch drawn; then worker
    processes."""
    eval_t, train_t = transforms
    target_t = DigitLabel(classes) if digit_classes(classes) else None
    X, y = default_collate([ImageFolderDataset(samples, eval_t, target_t)[i]
                            for i in range(3)])
    print(f"default_collate([3 (image, label) samples]) -> X {list(X.shape)}, "
          f"y {y.tolist()}")
    extra = [t for t in train_t.transforms if isinstance(t, v2.RandomCrop)]
    print("Training batches go through the training transform: the evaluation steps "
          "plus " + (f"{extra[0]}" if extra else "nothing (--max-shift 0)"))
    train_set = ImageFolderDataset(samples, train_t, target_t)  # a new shift at
    # every read
    loader = make_loader(train_set, args.batch_size, device, shuffle=True,
                         generator=generator)
    X, y = next(iter(loader))
    print(f"{len(loader)} batches of up to {args.batch_size}; "
          f"one batch: X {list(X.shape)} {X.dtype}, y {list(y.shape)} {y.dtype}: "
          f"{y.tolist()[:12]}...")
    plot_batch(X, y, args.show)
    dl_utils.prose("""
        num_workers > 0 reads samples in that many background processes while the model
        computes. Each worker is a separate Python process with its own copy of the
        Dataset: it takes time to start (paid again every epoch unless
        persistent_workers=True), and on a machine with 2 cores it competes with the
        training for them. Workers pay off when loading one image costs real work
        (decoding large JPEGs, heavy augmentation) and cores are free: `make bench`
        times num_workers 0 and 2 on small PNGs and on larger JPEGs. Where workers start
        a fresh Python (Windows, macOS, and Linux from Python 3.14 on), each imports
        this file again: without the `if __name__ == "__main__":` guard at the bottom,
        each would start the whole lesson over. Small data that fits in memory is
        fastest decoded once, as the other lessons do.""")


def use_course_models(dataset, classes, args, device):
    """The CNN and MLP of lessons 6 and 3, on the folder: accuracy, per class,
    mistakes."""
    if not digit_classes(classes):
        print("The class folders are not the digits 0-9: the course's models, which "
              "output digits, cannot be scored on them. Fine-tuning below still works.")
        return
    loader = make_loader(dataset, 256, device)
    for name, path in (("lesson 6's CNN on the folder", args.cnn),
                       ("lesson 3's MLP on the folder", args.mlp)):
        found = evaluate_course_model(name, path, loader, device, args.show)
        if found and "CNN" in name:
            _, probs, y = found
            X = torch.cat([X for X, _ in loader])
            dl_utils.plot_confident_mistakes(dl_utils.to_pixels(X), probs, y, 12,
                                             args.show, "08_mistakes.png", "folder")


def main(argv=None):
    args = parse_args(argv)
    dl_utils.setup_figures(args.show)
    dl_utils.section("Setup")
    device = dl_utils.get_device(args.device)
    generator = dl_utils.set_seed(args.seed)
    dl_utils.section("The folder: one subfolder per class")
    folder, classes, samples = the_folder(args)
    dl_utils.section("A Dataset, written by hand")
    eval_t, train_t = make_transforms(args.preprocess, args.max_shift)
    print(f"The evaluation transform:\n{eval_t}")
    samples = dl_utils.keep_preparable(samples, eval_t)  # e.g. a blank photo: skipped
    dataset = hand_written_dataset(samples, classes, eval_t)
    print("(torchvision's ImageFolder does the same: "
          "tests/test_own_images.py checks it.)")
    dl_utils.section("A DataLoader: batches, shuffling, collate")
    loader_section(samples, classes, (eval_t, train_t), args, device, generator)
    dl_utils.section("The course's models on this folder")
    use_course_models(dataset, classes, args, device)
    folder_flag = "" if args.folder is None else f" --folder {folder}"
    dl_utils.prose(f"""
        Next: python 08b_fine_tuning.py{folder_flag}
        fine-tunes the CNN on half of this folder, judges it on the other half, and
        measures what it forgets.""")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":  # required for DataLoader workers on Windows and macOS
    dl_utils.run_main(main)
