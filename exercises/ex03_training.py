"""Lesson 3's exercises: the training loop (03_train_mnist.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 03
Stuck? exercises/solutions/ex03_training.py has one way to do each (try first!).
"""


# ---- 03.1 code: the five steps, from memory ------------------------------------------
def train_one_epoch(model, batches, loss_fn, optimizer):
    """One epoch of training: for every (X, y) in batches, lesson 3's five steps.
    Put the model in training mode first. Return nothing; the model's weights change.
    The check runs yours and dl_utils.train_steps on copies of one model with the same
    batches: the weights must come out the same. (Its model has dropout and comes in
    evaluation mode, as after a validation pass.) Try it without looking at lesson 3.
    """
    raise NotImplementedError("TODO")


# ---- 03.2 predict --------------------------------------------------------------------
# Lesson 3's SimpleNN, trained for one epoch on 2,000 images WITHOUT
# optimizer.zero_grad() (gradients pile up from batch to batch). Compared with the same
# training with it, its validation accuracy is...
#   "A": higher   "B": about the same (within 2 points)
#   "C": lower by more than 2 points
PREDICT_NO_ZERO_GRAD = None  # TODO: "A", "B" or "C"


# ---- 03.3 explore: train faster ------------------------------------------------------
# Run python 03_train_mnist.py --epochs 2 --subset 5000 and note its best validation
# accuracy with the defaults (--lr 0.001, --batch-size 64). Find a --lr and a
# --batch-size with which the same command reaches at least 92.5%; try a few (each run
# takes seconds), then write the flags you chose here. The check runs 03 with them.
FLAGS_03_FAST = None  # TODO: e.g. ["--lr", "0.002", "--batch-size", "64"]
