"""``azureml-model-deployment: <name>`` on every answer, as Azure ML's endpoints send it.

WSGI middleware around the whole app (``POST /score``'s lane included; see
``lane.py`` on why not a Flask hook), installed only when
``Var.DEPLOYMENT_NAME`` is set: the stack fills it from the pod's
``aks-gpu-scoring/deployment`` label, so a client (and ``compare``'s user)
sees which deployment of the endpoint answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..contract import DEPLOYMENT_HEADER as HEADER


class DeploymentHeader:
    def __init__(self, app: Callable[..., Iterable[bytes]], name: str):
        self.app = app
        self.header = (HEADER, name)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, self.header], exc_info)
        return self.app(environ, start)
