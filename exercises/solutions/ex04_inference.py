"""Reference solutions for lesson 4's exercises (exercises/ex04_inference.py)."""

import torch


def load_weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def predict(model, X):
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(X), dim=1)
    return probs.argmax(dim=1), probs


PREDICT_STATE_SIZE = "C"
