"""Reference solutions for lesson 9's exercises (exercises/ex09_serving.py)."""

import base64
import binascii
import json
import urllib.request

from dl_utils import serving


def ask_server(url, png):
    encoded = base64.b64encode(png).decode()
    body = json.dumps({"image": "data:image/png;base64," + encoded})
    request = urllib.request.Request(f"{url}/api/predict", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["models"][0]["prediction"]


def image_from_body(body):
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise serving.RequestError(400, f"not JSON: {err}") from err
    text = data.get("image") if isinstance(data, dict) else None
    if not (isinstance(text, str) and text.startswith("data:image/") and "," in text):
        expected = '{"image": "data:image/png;base64,..."}'
        raise serving.RequestError(400, f"expected {expected}")
    try:
        return base64.b64decode(text.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError) as err:
        raise serving.RequestError(400, f"not base64: {err}") from err


PREDICT_BATCHING = "C"


def make_app(predict):
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel

    class DigitRequest(BaseModel):
        image: str

    app = FastAPI()

    @app.post("/api/predict")
    def read_digit(body: DigitRequest):
        try:
            image = serving.decode_data_url(body.image)
        except serving.RequestError as err:
            raise HTTPException(400, str(err)) from None
        return {"prediction": predict(image)}

    @app.get("/api/health")
    def health():
        return {"ok": True}

    return app
