"""Lesson 10's exercises: data-parallel training (10_distributed_training.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 10
Stuck? exercises/solutions/ex10_distributed.py has one way to do each (try first!).
"""


# ---- 10.1 code: the all-reduce by hand -----------------------------------------------
def average_gradients(grads_per_rank):
    """What DDP's all-reduce gives every rank: grads_per_rank[r] is rank r's list of
    gradients (one tensor per parameter, from its own share of the batch); return one
    list, each parameter's gradient averaged over the ranks. The check computes the
    gradient of the whole batch in one process: with a mean loss and equal shares, the
    two are equal (lesson 10's proof).
    """
    raise NotImplementedError("TODO")


# ---- 10.2 code: a rank's share -------------------------------------------------------
def shard(n, world, rank):
    """The indices rank `rank` of `world` processes trains on, from a dataset of n
    items, as DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False)
    gives them: a list. When n does not divide evenly, DistributedSampler first repeats
    indices from the start until it does (every rank must take the same number of
    steps), then gives rank r every world-th index starting at r.
    """
    raise NotImplementedError("TODO")


# ---- 10.3 predict --------------------------------------------------------------------
# A DistributedSampler with shuffle=True whose set_epoch() is never called, iterated for
# two epochs. "A": epoch 2 repeats epoch 1's order   "B": epoch 2 is shuffled anew
PREDICT_SET_EPOCH = None  # TODO: "A" or "B"
