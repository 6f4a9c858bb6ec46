"""Turn the kubeconfig AKS hands out into one the Kubernetes provider can use unattended.

More: docs/deploying.md, "How the program is built".
"""
import base64

import yaml

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
#: Flags each mode carries over from AKS's kubeconfig (convert.go's switch).
CARRIED = {
    "azurecli": (),
    "msi": (),
    "workloadidentity": (),
    "devicecode": ("--client-id", "--tenant-id", "--environment"),
    "interactive": ("--client-id", "--tenant-id", "--environment"),
    "spn": ("--client-id", "--tenant-id", "--environment"),
}
REQUIRED = ("--client-id", "--tenant-id")


class KubeconfigError(ValueError):
    """AKS's kubeconfig lacks what the chosen kubelogin mode needs."""


def _flag(args: list[str], name: str) -> str | None:
    """The value after `name` in `args` (kubelogin's getExecArg), or None."""
    for i, arg in enumerate(args[:-1]):
        if arg == name:
            return args[i + 1]
    return None


def kubelogin_args(old_args: list[str], login_mode: str) -> list[str]:
    """`kubelogin get-token` arguments for `login_mode`, built as convert-kubeconfig builds them."""
    if login_mode not in CARRIED:
        raise KubeconfigError(f"kubelogin mode {login_mode!r} is not one of {', '.join(CARRIED)}")
    server_id = _flag(old_args, "--server-id")
    if not server_id:
        raise KubeconfigError("AKS's kubeconfig has no --server-id for kubelogin")
    args = ["get-token", "--login", login_mode, "--server-id", server_id]
    cache_dir = _flag(old_args, "--cache-dir") or _flag(old_args, "--token-cache-dir")
    if cache_dir:
        args += ["--cache-dir", cache_dir]
    for name in CARRIED[login_mode]:
        value = _flag(old_args, name)
        if value:
            args += [name, value]
        elif name in REQUIRED:
            raise KubeconfigError(f"kubelogin --login {login_mode} needs {name}, which AKS's "
                                  "kubeconfig does not carry")
    return args


def unattended_kubeconfig(encoded: str, login_mode: str) -> str:
    """Decode AKS's base64 kubeconfig and rebuild every kubelogin user for `login_mode`."""
    config = yaml.safe_load(base64.b64decode(encoded).decode())
    for user in config.get("users") or []:
        exec_ = (user.get("user") or {}).get("exec")
        if not exec_ or "kubelogin" not in exec_.get("command", "").lower():
            continue  # client certificates (local accounts) pass through untouched
        rebuilt = {"apiVersion": EXEC_API_VERSION, "command": "kubelogin",
                   "args": kubelogin_args(list(exec_.get("args") or []), login_mode)}
        if exec_.get("installHint"):
            rebuilt["installHint"] = exec_["installHint"]
        user["user"]["exec"] = rebuilt
    return yaml.safe_dump(config, sort_keys=False)
