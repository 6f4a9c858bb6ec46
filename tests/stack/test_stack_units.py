"""The small pure pieces of infra/: kubeconfig rewrite, content tag, ACR token exchange, GPU sizes."""
import base64
import io
import json
import urllib.parse

import pytest
import yaml

import mock_run


def _encoded(config: dict) -> str:
    return base64.b64encode(yaml.safe_dump(config).encode()).decode()


def test_kubelogin_login_mode_is_switched_and_added():
    from infra.kubeconfig import unattended_kubeconfig
    config = yaml.safe_load(unattended_kubeconfig(_encoded(mock_run.AKS_EXEC_KUBECONFIG), "spn"))
    args = config["users"][0]["user"]["exec"]["args"]
    assert args.count("--login") == 1 and args[args.index("--login") + 1] == "spn"
    assert "--server-id" in args  # everything else is kept
    bare = {"users": [{"name": "u", "user": {"exec": {"command": "kubelogin", "args": ["get-token"]}}}]}
    args = yaml.safe_load(unattended_kubeconfig(_encoded(bare), "azurecli"))["users"][0]["user"]["exec"]["args"]
    assert args == ["get-token", "--login", "azurecli"]


def test_admin_kubeconfig_passes_through():
    from infra.kubeconfig import unattended_kubeconfig
    admin = {"users": [{"name": "admin", "user": {"client-certificate-data": "Y2VydA=="}}]}
    assert yaml.safe_load(unattended_kubeconfig(_encoded(admin), "azurecli")) == admin


def test_content_tag_follows_content_only(tmp_path):
    from infra.content_tag import content_tag
    app, model = tmp_path / "app", tmp_path / "model"
    app.mkdir(), model.mkdir()
    (app / "Dockerfile").write_text("FROM x")
    (app / ".dockerignore").write_text("__pycache__/\n")
    (model / "saved_model.pb").write_bytes(b"graph")
    tag = content_tag(app, model)
    assert len(tag) == 16 and tag == content_tag(app, model)
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "m.pyc").write_bytes(b"cache")
    assert content_tag(app, model) == tag
    (model / "saved_model.pb").write_bytes(b"graph2")
    assert content_tag(app, model) != tag
    # The same file under the other root is a different image.
    assert content_tag(model, app) != content_tag(app, model)


def test_acr_exchange_posts_the_aad_token_and_returns_the_refresh_token(monkeypatch):
    from infra import acr_auth
    seen = {}

    def fake_urlopen(request, timeout):
        seen["url"], seen["method"] = request.full_url, request.get_method()
        seen["form"] = dict(urllib.parse.parse_qsl(request.data.decode()))
        return io.BytesIO(json.dumps({"refresh_token": "acr-refresh"}).encode())

    monkeypatch.setattr(acr_auth.urllib.request, "urlopen", fake_urlopen)
    assert acr_auth.exchange_token("r.azurecr.io", "tenant", "aad") == "acr-refresh"
    assert seen["url"] == "https://r.azurecr.io/oauth2/exchange" and seen["method"] == "POST"
    assert seen["form"] == {"grant_type": "access_token", "service": "r.azurecr.io",
                            "tenant": "tenant", "access_token": "aad"}


@pytest.mark.parametrize("size", ["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4",
                                  "Standard_NC40ads_H100_v5"])
def test_current_gpu_sizes_are_accepted(size):
    from infra.gpu_sizes import gpu_size_problem
    assert gpu_size_problem(size) is None
