"""Reference solutions for lesson 7b's exercises (exercises/ex07b_remedies.py)."""


def adamw_step(w, grad, state, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    state["step"] += 1
    t = state["step"]
    w = w * (1 - lr * weight_decay)  # decoupled: straight on the weights
    state["m"] = betas[0] * state["m"] + (1 - betas[0]) * grad
    state["v"] = betas[1] * state["v"] + (1 - betas[1]) * grad ** 2
    m_hat = state["m"] / (1 - betas[0] ** t)
    v_hat = state["v"] / (1 - betas[1] ** t)
    return w - lr * m_hat / (v_hat.sqrt() + eps)


PREDICT_DROPOUT_MEAN = "B"
PREDICT_BN_TRAIN_MODE = "C"
