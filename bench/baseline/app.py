"""The 2019 Azure ML ``score.py`` recipe, as a Flask app: the yardstick our server must beat.

What it reproduces: the model is loaded once per worker, every request makes exactly one
signature call with a batch of one (no batching, no queue), and one sync gunicorn worker
serves one request at a time. It speaks what our server speaks to old clients (raw image
bytes POSTed to /score, ``Authorization: Bearer <key>``, 405 on GET), so one load drives both.
It reads the same environment as ours: SCORING_MODEL_DIR, and SCORING_API_KEYS_DIR/primary.
"""
import hmac
import os
from pathlib import Path

from flask import Flask, jsonify, request

TOP_K = 5


def create_app() -> Flask:
    """Load the model (gunicorn calls this in the worker, after the fork) and wire the routes."""
    import numpy as np
    import tensorflow as tf

    infer = tf.saved_model.load(os.environ["SCORING_MODEL_DIR"]).signatures["serving_default"]
    (input_name,) = infer.structured_input_signature[1]
    key = (Path(os.environ["SCORING_API_KEYS_DIR"]) / "primary").read_text().strip().encode()
    app = Flask(__name__)

    @app.get("/readyz")
    def ready():
        return {"status": "ready"}

    @app.post("/score")
    def score():
        supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(supplied, key):
            return jsonify(error={"code": "unauthorized", "message": "send Authorization: Bearer <key>"}), 401
        try:
            (scores,) = infer(**{input_name: tf.constant([request.get_data()])}).values()
        except tf.errors.InvalidArgumentError:
            return jsonify(error={"code": "bad_image", "message": "the body is not a decodable image"}), 400
        row = scores.numpy()[0]
        top = np.argsort(row)[::-1][:TOP_K]
        return jsonify(predictions=[{"class": int(index), "score": float(row[index])} for index in top])

    return app
