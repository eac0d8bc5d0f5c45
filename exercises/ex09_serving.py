"""Lesson 9's exercises: serving (09_serve_digits.py, _course/serving.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 09
Stuck? exercises/solutions/ex09_serving.py has one way to do each (try first!).
"""

import base64  # noqa: F401  (you will need these)
import json  # noqa: F401
import urllib.request  # noqa: F401

from fastapi import FastAPI, HTTPException  # noqa: F401  (for 09.4)
from pydantic import BaseModel  # noqa: F401  (for 09.4)

# the course's HTTP helper: serving.RequestError, serving.decode_data_url
from dl_utils import serving  # noqa: F401


# ---- 09.1 code: a client -------------------------------------------------------------
def ask_server(url, png):
    """Send the image `png` (the bytes of a PNG file) to the digit server at `url`
    (e.g. "http://127.0.0.1:8000") as the drawing page does: POST to url +
    "/api/predict" a JSON body {"image": "data:image/png;base64,<the bytes in base64>"}.
    Return the first model's prediction (the answer's "models"[0]["prediction"], an
    int).
    The check starts a server on a free port whose answer depends on every byte sent.
    """
    raise NotImplementedError("TODO")


# ---- 09.2 code: an endpoint's input check --------------------------------------------
def image_from_body(body):
    """The image bytes inside a request's body (bytes): the JSON object's "image", a
    data URL "data:image/...;base64,<base64>", decoded. Anything else is the client's
    fault: raise serving.RequestError(400, "a message that says what was expected"),
    never another exception (a server answers those with 500, "our fault"). The check
    sends seven kinds of bad body: not JSON, not UTF-8, a list, no "image", a number,
    another URL, broken base64.
    """
    raise NotImplementedError("TODO")


# ---- 09.3 predict --------------------------------------------------------------------
# Lesson 3's SimpleNN on one CPU thread: 64 images in one forward pass, against 64
# passes of one image each. Per image, the batch is...
#   "A": about as fast (under 1.5x faster)   "B": 1.5x to 4x faster
#   "C": 4x faster or more
PREDICT_BATCHING = None  # TODO: "A", "B" or "C"


# ---- 09.4 code: an API of your own, with FastAPI -------------------------------------
def make_app(predict):
    """A FastAPI app (lesson 9's make_app is the model to read) with two routes:
    - POST /api/predict, whose JSON body is {"image": "data:image/png;base64,..."}:
      declare it as a pydantic model (class ...(BaseModel): image: str), decode the data
      URL (serving.decode_data_url does it, raising serving.RequestError for a bad one:
      turn that into fastapi.HTTPException(400, message)), and answer {"prediction":
      predict(the image's bytes)};
    - GET /api/health, answering {"ok": true}.
    Return the app. The check calls it through FastAPI's TestClient with good and bad
    requests: a body that does not fit your model must be refused (FastAPI does that,
    422), a bad data URL must be a 400, never a 500.
    """
    raise NotImplementedError("TODO")
