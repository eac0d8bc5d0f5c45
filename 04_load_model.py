"""Lesson 4: what a trained network's outputs mean, then saving and loading it safely.

This script loads the model that lesson 3 saved and follows a prediction from the
network's raw scores (logits) to probabilities (softmax) to the predicted digit. It
counts the predictions on all 10,000 test images (the accuracy must be exactly the one
lesson 3 reported), shows where the model goes wrong (a confusion matrix, and the
mistakes it was most sure of), and reads your own handwriting with --image. Last, how
a model is saved and loaded safely: a state_dict of weights, never a pickle of code.

Run it after 03_train_mnist.py (or 06_convolutional_network.py):
    python 04_load_model.py                              # models/simple_nn.pt, from 03
    python 04_load_model.py --image my_digit.png         # classify your own handwriting
    python 04_load_model.py --checkpoint models/cnn.pt   # any course model, e.g. 06's
Exercises: exercises/ex04_inference.py, checked by python exercises/check.py 04
"""

import copy
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

import dl_utils

# ---- Settings (each has a command-line flag; -h lists them) ----
CHECKPOINT = dl_utils.MODELS_DIR / "simple_nn.pt"  # what 03_train_mnist.py saves
NUM_EXAMPLES = 8  # test images whose logits -> probabilities -> prediction we show
NUM_MISTAKES = 12  # most confident mistakes to display


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--checkpoint", default=str(CHECKPOINT),
                        help="checkpoint to load (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    parser.add_argument("--image", default=None,
                        help="classify this image of a digit (PNG or JPEG, any size, "
                             "dark on light or light on dark), and nothing else")
    parser.add_argument("--num-examples", type=dl_utils.positive_int,
                        default=NUM_EXAMPLES,
                        help="test images to follow from logits to prediction "
                             "(default: %(default)s)")
    parser.add_argument("--num-mistakes", type=dl_utils.positive_int,
                        default=NUM_MISTAKES,
                        help="most confident mistakes to show (default: %(default)s)")
    dl_utils.add_common_args(parser)
    return parser.parse_args(argv)


# ---- 1. The idea: what the outputs mean --------------------------------------------
def load_trained_model(path, device):
    """Rebuild the network from its checkpoint (how, and why so: the last section)."""
    if not Path(path).exists():
        raise dl_utils.FriendlyError(f"no checkpoint at {dl_utils.display_path(path)}: "
                                     f"{lesson_that_saves(path)}")
    model, checkpoint = dl_utils.load_checkpoint(path, device=device)
    kwargs = ", ".join(f"{k}={v}" for k, v in checkpoint["model_kwargs"].items())
    print(f"Loaded {dl_utils.display_path(path)}: "
          f"{checkpoint['model_class']}({kwargs}), defined in "
          f"{checkpoint['model_module']}.py")
    trained_on = checkpoint.get("trained_on", "not recorded (an older checkpoint)")
    print(f"Trained on: {trained_on}")
    scaling = dl_utils.input_scaling(checkpoint, dl_utils.INPUT_SCALINGS)  # 03 --inputs
    if scaling != "standardized":  # (load_checkpoint wrapped it in InputsAsTrained)
        print(f"Inputs: {scaling}; it is fed the standardized ones, converted back by "
              "InputsAsTrained's forward()")
    return model, checkpoint


def logits_walkthrough(model, X, y):
    """Follow a few images from logits to probabilities to the predicted digit."""
    model.eval()  # inference mode, and no gradients: why, in section 2 below
    with torch.no_grad():
        logits = model(X)
    probs = torch.softmax(logits, dim=1)
    print("The network outputs 10 raw scores (logits) per image, any real numbers:")
    print("  image 0 logits: " + " ".join(f"{v:+.1f}" for v in logits[0].tolist()))
    dl_utils.prose("""
        softmax turns them into probabilities: exp(logit) / sum of exp(all logits),
        positive and summing to 1 (the largest logit gets the largest probability):""")
    print("  image 0 probs:  " + " ".join(f"{v:.3f}" for v in probs[0].tolist())
          + f"   (sum {probs[0].sum():.3f})")
    dl_utils.prose("""
        The prediction is the digit with the largest probability (argmax), the same
        as the argmax of the logits: for predicting alone, softmax is not even needed.
        """)
    rows = []
    for i in range(len(y)):
        top = probs[i].topk(2)
        rows.append([i, int(y[i]), int(top.indices[0]), f"{100 * top.values[0]:.2f}%",
                     f"{int(top.indices[1])} ({100 * top.values[1]:.2f}%)",
                     "yes" if top.indices[0] == y[i] else "NO"])
    dl_utils.print_table(["image", "true", "predicted", "probability", "runner-up",
                          "correct"], rows)
    return probs


def plot_predictions(images, y, probs, show):
    """Each image beside a bar chart of its 10 probabilities."""
    n = len(y)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6),
                                      gridspec_kw={"height_ratios": [1.2, 1]})
    for i in range(n):
        axes[0, i].imshow(images[i].cpu().numpy(), cmap="gray")
        axes[0, i].set_title(f"true {int(y[i])}", fontsize=9)
        axes[0, i].axis("off")
        colors = ["tab:green" if d == int(y[i]) else "tab:gray" for d in range(10)]
        axes[1, i].bar(range(10), probs[i].numpy(), color=colors)
        axes[1, i].set(ylim=(0, 1), xticks=range(10))
        axes[1, i].tick_params(labelsize=6)
    fig.suptitle("From image to probabilities (green: the true digit)")
    dl_utils.save_figure(fig, "04_predictions.png", show)


def check_accuracy(model, test_loader, device, checkpoint):
    """Evaluate on the test set: the number must equal the one training saved."""
    loss, acc = dl_utils.evaluate_model(model, test_loader, device)
    saved = checkpoint.get("metrics", {}).get("test_acc")
    n = len(test_loader.dataset)
    rows = [["now, in this script", f"{round(acc * n):,} / {n:,}",
             dl_utils.format_accuracy(acc, n)]]
    if saved is not None:
        rows.append(["reported at training", f"{round(saved * n):,} / {n:,}",
                     dl_utils.format_accuracy(saved, n)])
    dl_utils.print_table(["test accuracy", "correct", "accuracy (95% interval)"], rows)
    if saved is not None:
        print(same_result_verdict(acc, saved, n, checkpoint.get("device"), device))
    chose = ("Validation accuracy chose the epoch during training"
             if "best_epoch" in checkpoint.get("metrics", {}) else
             "This model kept its last epoch: nothing was chosen")
    se = dl_utils.accuracy_se(acc, n)
    dl_utils.prose(f"""
        ({chose}; the test set was used once to report the result. Tuning anything on
        it would make it one more validation set. The interval is the test set's own
        sampling error: another {n:,} images like these would give a slightly
        different accuracy, typically {100 * se:.2f} points away (one standard error at
        this accuracy), so the 95% interval is about ± {196 * se:.2f}, no better.)""")
    return acc


def same_result_verdict(acc, saved, n, saved_device, device):
    """Same weights and data, same accuracy: exactly, on the same kind of device."""
    if acc == saved:
        return "Same weights, same data, eval mode: identical."
    differ = abs(round((acc - saved) * n))
    if saved_device and torch.device(saved_device).type != torch.device(device).type:
        return (f"Trained on {saved_device}, evaluated on {device}: {differ} of {n:,} "
                "predictions differ. Expected: devices\nround sums differently, which "
                "flips the few images that sit right at a decision boundary.")
    return (f"DIFFERENT on the same kind of device ({differ} of {n:,} predictions): "
            "the file or the data changed\nsince training, or this PyTorch build "
            "computes differently.")


def mistakes(model, test_loader, device, args):
    """The confusion matrix and the most confident mistakes on the whole test set."""
    probs, y = dl_utils.predict_all(model, test_loader, device)
    report_confusions(dl_utils.confusion_matrix(probs, y), args.show)
    dl_utils.plot_confident_mistakes(dl_utils.to_pixels(test_loader.X), probs, y,
                                     args.num_mistakes, args.show)


def report_confusions(cm, show):
    """Print the matrix, name the most frequent confusions, and save it as a figure."""
    dl_utils.print_table(["true \\ pred"] + [str(d) for d in range(10)],
                         [[d] + cm[d].tolist() for d in range(10)])
    off = cm.clone().fill_diagonal_(0)  # the mistakes only
    top = off.flatten().topk(3)  # the 3 largest counts, as positions among the 100
    true, pred = torch.unravel_index(top.indices, (10, 10))  # position -> (row, column)
    pairs = ", ".join(f"{t} read as {p} ({c}x)" for t, p, c in
                      zip(true.tolist(), pred.tolist(), top.values.tolist()))
    print(f"Most frequent confusions: {pairs}")
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(np.log1p(cm.numpy()), cmap="Blues")  # log scale: the errors stay visible
    for i in range(10):
        for j in range(10):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted digit",
           ylabel="true digit", title="Confusion matrix on the 10,000 test images")
    dl_utils.save_figure(fig, "04_confusion_matrix.png", show)


# ---- 2. Two habits of inference ---------------------------------------------------
def eval_mode_demo(model, X):
    """model.eval() and torch.no_grad(): what each does; does eval() matter here?

    Train mode runs on a copy: batch norm in train mode updates its running statistics
    with every batch, even under torch.no_grad(), and would change the loaded model.
    """
    with torch.no_grad():
        y_train_mode = copy.deepcopy(model).train()(X)
    model.eval()
    with torch.no_grad():
        y_eval_mode = model(X)
    # Compare what the model outputs rather than guess from its layer types: any
    # layer (dropout, batch norm, or one you write) may behave differently in training.
    differ = (y_train_mode - y_eval_mode).abs().max().item()
    if differ == 0:
        dl_utils.prose("""
            Outputs in train mode and eval mode: identical. No layer of this model
            behaves differently in training, so eval() changes nothing here. Dropout
            (lesson 7) does: in train mode it zeroes random values and doubles the
            rest, in eval mode it passes everything through, so that predictions are
            deterministic (lesson 7b measures what forgetting eval() costs).""")
    else:
        dl_utils.prose(f"""
            Outputs in train mode and eval mode differ (by up to {differ:.3g}): this
            model has layers that behave differently in training. Forget eval() and its
            predictions are wrong (lesson 7b measures by how much).""")
    with_grad = model(X)
    with torch.no_grad():
        without_grad = model(X)
    print(f"\nWith autograd on:    output.grad_fn = {type(with_grad.grad_fn).__name__}")
    print(f"Under torch.no_grad(): output.grad_fn = {without_grad.grad_fn}")
    dl_utils.prose("""
        With autograd on, each output remembers the operation that made it (grad_fn),
        and that one its inputs, back to the weights: the "graph" that backward() walks.
        Each step keeps what its backward formula needs (a Linear layer its input, a
        ReLU its output) until backward() runs. Inference needs no gradients, so under
        torch.no_grad() nothing is recorded or kept: faster and lighter.""")


# ---- 3. Saving and loading safely --------------------------------------------------
# Two ways to save a model: its weights (the state_dict) or the whole object, pickled
# (pickle: Python's way of turning any object into bytes, and back by running what the
# bytes say). The errors printed here are deliberate: each shows why weights win.
EXPECTED = "(expected: this error is the point)"  # printed before each one


def what_the_file_holds(path, checkpoint):
    """The state_dict route: what the checkpoint loaded above holds.

    A state_dict is only a dict of tensors ({'fc1.weight': tensor of shape [128, 784],
    ...}), no code. To use it you need the class that defines the layers and forward().
    The checkpoint records which class (and with which arguments), so that
    dl_utils.load_checkpoint rebuilds it and pours the weights in, having read the file
    with torch.load(path, weights_only=True): tensors and plain values only.
    """
    print(f"{dl_utils.display_path(path)} was saved with torch "
          f"{checkpoint.get('torch_version', '?')} and holds: {', '.join(checkpoint)}")
    rows = []
    for name, tensor in checkpoint["model_state_dict"].items():
        rows.append([name, str(list(tensor.shape)), f"{tensor.numel():,}"])
    dl_utils.print_table(["state_dict entry", "shape", "numbers"], rows)


def whole_model_route(path, model):
    """Why torch.save(model) is not the default, shown on a file written just now."""
    whole = Path(path).with_name(Path(path).stem + "_whole.pt")
    if whole.exists():
        inspect_without_unpickling(whole)
    with tempfile.TemporaryDirectory() as folder:
        mine = Path(folder) / "whole_model.pt"
        torch.save(model, mine)  # the whole object, pickled
        # The classes and functions the file names, read without running its pickle:
        named = torch.serialization.get_unsafe_globals_in_checkpoint(mine)
        ours = [n for n in named if not n.startswith("torch.")]
        print("\nThis script now saves the model it loaded the same way, to a "
              "temporary file.")
        source = f"{type(model).__module__}.py"  # the lesson that defines the class
        print(f"It names {', '.join(ours)}: here the class came from importing "
              f"{source}.")
        try:
            torch.load(mine, weights_only=True)
        except Exception as err:  # pickle.UnpicklingError
            print(f"  torch.load(weights_only=True):\n    {EXPECTED} refused, "
                  f"{type(err).__name__}: {unsupported_global(err)}")
        # Safe ONLY because this script wrote the file a moment ago: never do this with
        # a file you did not make yourself.
        torch.load(mine, weights_only=False)
        print(f"  torch.load(weights_only=False): works here, where {source} can be "
              "imported")
        print(f"  the same file, loaded by a Python started in another folder:\n    "
              f"{load_elsewhere(mine)}")
    dl_utils.prose("""
        weights_only=True refuses to rebuild any object but tensors and plain
        containers: it is designed so that a file cannot make it run code.
        weights_only=False runs
        whatever the pickle says, so a file from a stranger could run code on your
        machine: never use it on a file you did not just write yourself. Even when you
        trust the file, it only loads where the class can be imported under the same
        name: move it to another project, rename a file or a class, and every
        whole-model file breaks. A state_dict depends on nothing but parameter
        names.""")


def inspect_without_unpickling(whole):
    """What 03's whole-model file refers to, read from the pickle without running it."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(whole)
    except Exception as err:  # not a torch zip file, damaged...
        print(f"{dl_utils.display_path(whole)} cannot be inspected "
              f"({type(err).__name__}).")
        return
    print(f"Beside the checkpoint lies {dl_utils.display_path(whole)}: the whole "
          "model, saved by 03 with torch.save(model).")
    dl_utils.prose("""
        We do not unpickle it: a file lying in a folder could come from anyone, and
        unpickling can run code. torch.serialization.get_unsafe_globals_in_checkpoint
        reads the pickle without running it and lists the classes it would need:""")
    for name in sorted(names):  # sorted: the tool returns them in no fixed order
        print(f"  {name}")
    if any(name.startswith("__main__.") for name in names):
        dl_utils.prose("""
            "__main__.SimpleNN" is a reference to a class, not its code: 03 was run as
            a script, so its module was called __main__. Here __main__ is
            04_load_model.py, which has no SimpleNN: unpickling the file in this script
            would fail with AttributeError: Can't get attribute 'SimpleNN' on <module
            '__main__'>.""")


def unsupported_global(err) -> str:
    """The line of a weights_only error that names the refused class."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if "Unsupported global" in line:
            return line.split(". Please")[0][:200]
    return lines[0][:200] if lines else ""


def load_elsewhere(path) -> str:
    """Unpickle `path` in a fresh Python run from an empty folder: another project."""
    code = (f"import torch; torch.load({str(path)!r}, weights_only=False); "
            "print('loaded')")
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True,
                            text=True, cwd=Path(path).parent,
                            timeout=120)  # -I: ignore this folder
    if result.returncode == 0:
        return "loaded"
    errors = [ln for ln in result.stderr.strip().splitlines() if "Error" in ln]
    return f"{EXPECTED} fails, " + (errors[-1] if errors else "with an error")


# ---- Your own handwriting: --image, which runs instead of sections 1 to 3 ---------
def classify_image(model, path, device, show):
    """--image: preprocess the learner's digit, predict, print the probabilities."""
    # dl_utils.read_grayscale: PNG or JPEG only, size checked before decoding, any
    # storage (16-bit, transparent, turned by the camera) made 8-bit grey levels.
    pixels = digit_from_gray(dl_utils.read_grayscale(path), path)
    X = dl_utils.normalize(torch.from_numpy(pixels)[None]).to(device)  # [1, 1, 28, 28]
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(X), dim=1)[0].cpu()
    pred = int(probs.argmax())
    dl_utils.print_table(["digit", "probability"],
                         [[d, f"{100 * p:.2f}%"] for d, p in enumerate(probs.tolist())])
    print(f"\nPrediction for {path}: {pred} ({100 * probs[pred]:.1f}% sure)")
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(7, 3))
    ax_img.imshow(pixels, cmap="gray")
    ax_img.set_title("what the model sees (28x28)")
    ax_img.axis("off")
    ax_bar.bar(range(10), probs.numpy())
    ax_bar.set(xticks=range(10), ylim=(0, 1), title=f"prediction: {pred}")
    dl_utils.save_figure(fig, "04_my_digit.png", show)
    return pred


def digit_from_gray(image: Image.Image, name="the image") -> np.ndarray:
    """Turn a grey image of one digit into a 28x28 MNIST-style uint8 image.

    MNIST was made this way: pixel values 0 for the background and up to 255 for the
    ink (drawn with a grey colour map, light ink on black), the digit scaled to fit a
    20x20 box (keeping its aspect ratio), then placed in a 28x28 frame so that its
    centre of mass sits in the middle. A model only works on inputs that look like
    what it was trained on, so we repeat those steps. Lessons 8 and 9 use
    dl_utils.digit_from_gray, a copy that tests/test_sync.py keeps equal to this one.
    """
    g = np.asarray(image, dtype=np.float32)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 127:  # dark ink on light paper: invert to MNIST's convention
        g = 255 - g
        border = 255 - border
    g = np.clip(g - np.median(border), 0, None)  # the paper's grey level becomes black
    if g.max() < 32:
        raise dl_utils.FriendlyError(f"no digit found in {name}: the image is nearly "
                                     "uniform")
    rows, cols = np.nonzero(g > 0.25 * g.max())  # the ink, ignoring faint noise
    crop = g[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    crop = crop * (255 / crop.max())
    h, w = crop.shape
    scale = 20 / max(h, w)
    # PIL wants (width, height)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(crop.astype(np.uint8)).resize(size,
                                                          Image.Resampling.LANCZOS)
    small = np.asarray(small, dtype=np.float32)
    return center_by_mass(small)


def center_by_mass(small: np.ndarray) -> np.ndarray:
    """Paste a <=20x20 image into a 28x28 frame, its centre of mass at pixel (14, 14).

    (14, 14) is where MNIST's own digits have theirs, on average to within 0.05 pixels
    (tests/test_train_and_load.py measures it on the 10,000 test images).
    """
    h, w = small.shape
    total = small.sum() or 1.0
    cy = (small.sum(axis=1) * np.arange(h)).sum() / total
    cx = (small.sum(axis=0) * np.arange(w)).sum() / total
    top = int(np.clip(round(14 - cy), 0, 28 - h))  # clip: never push ink off the frame
    left = int(np.clip(round(14 - cx), 0, 28 - w))
    frame = np.zeros((28, 28), dtype=np.float32)
    frame[top:top + h, left:left + w] = small
    return frame.clip(0, 255).astype(np.uint8)


# ---- Which lesson saves which checkpoint (for the error when one is missing) -------
# File names as the lessons save them, the longer names first: "simple_nn_03b.pt" also
# starts with "simple_nn". A name's _interrupted/_defaults copies start the same way.
SAVED_BY = (
    ("simple_nn_03b", "03b_training_that_survives.py"),
    ("simple_nn", "03_train_mnist.py"),
    ("mlp_cnn_recipe", "06_convolutional_network.py --arch mlp"),
    ("cnn_writers", "06b_other_writers.py"),
    ("cnn_finetuned", "08b_fine_tuning.py"),
    ("cnn", "06_convolutional_network.py"),
    ("regularized_mlp_dropout_batchnorm", "07b_inside_the_remedies.py"),
    ("regularized_mlp", "07_regularization.py"),
    ("ddp_simple_nn", "10_distributed_training.py"),
    ("sequence", "11_sequences_and_rnns.py"),
    ("vit", "12_attention_and_transformers.py"),
    ("ensemble", "13_ensembles.py"),
)


def lesson_that_saves(path):
    """What to run to make the missing checkpoint `path`, named by its file name."""
    for prefix, lesson in SAVED_BY:
        if Path(path).name.startswith(prefix):
            return f"run `python {lesson}` first to train and save one"
    return "run the lesson that trains it first"


def main(argv=None):
    args = parse_args(argv)
    dl_utils.setup_figures(args.show)
    dl_utils.section("The trained model")
    device = dl_utils.get_device(args.device)
    dl_utils.set_seed(args.seed)  # train mode below may draw random numbers (dropout)
    model, checkpoint = load_trained_model(args.checkpoint, device)
    if args.image:
        dl_utils.section(f"Classifying {args.image}")
        classify_image(model, args.image, device, args.show)
        dl_utils.show_figures(args.show)
        return 0

    _, _, test_loader = dl_utils.load_mnist_data(device=device)
    X, y = next(iter(test_loader))  # the first test images (it never shuffles)
    examples = X[:args.num_examples]
    labels = y[:args.num_examples].cpu()
    dl_utils.section("From logits to probabilities to predictions")
    probs = logits_walkthrough(model, examples, labels)
    plot_predictions(dl_utils.to_pixels(examples), labels, probs.cpu(), args.show)
    dl_utils.section("All 10,000 test images: the accuracy, again")
    check_accuracy(model, test_loader, device, checkpoint)
    dl_utils.section("Where the model goes wrong")
    mistakes(model, test_loader, device, args)
    dl_utils.section("model.eval() and torch.no_grad(): two habits of inference")
    eval_mode_demo(model, examples)
    dl_utils.section("Saving and loading safely: the state_dict route")
    what_the_file_holds(args.checkpoint, checkpoint)
    dl_utils.section("The whole-model route, and why it is not the default")
    whole_model_route(args.checkpoint, model)
    print("\nNext: python 05_experiment_architectures.py")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
