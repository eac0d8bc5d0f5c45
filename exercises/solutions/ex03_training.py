"""Reference solutions for lesson 3's exercises (exercises/ex03_training.py)."""


def train_one_epoch(model, batches, loss_fn, optimizer):
    model.train()
    for X, y in batches:
        optimizer.zero_grad()
        y_hat = model(X)
        loss = loss_fn(y_hat, y)
        loss.backward()
        optimizer.step()


PREDICT_NO_ZERO_GRAD = "C"
FLAGS_03_FAST = ["--lr", "0.002", "--batch-size", "32"]
