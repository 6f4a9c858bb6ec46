"""Turn the kubeconfig AKS hands out into one the Kubernetes provider can use unattended.

With local accounts disabled, AKS's user kubeconfig (format=exec) runs the
`kubelogin` exec plugin, defaulting to an interactive device-code login.
Pulumi cannot answer a prompt, so the `--login` mode is switched, as
`kubelogin convert-kubeconfig -l <mode>` would do: `azurecli` reuses your
`az login`; `spn`/`workloadidentity`/`msi` suit CI.
"""
import base64

import yaml


def unattended_kubeconfig(encoded: str, login_mode: str) -> str:
    """Decode AKS's base64 kubeconfig and set every kubelogin user's --login mode."""
    config = yaml.safe_load(base64.b64decode(encoded).decode())
    for user in config.get("users") or []:
        exec_ = (user.get("user") or {}).get("exec")
        if not exec_ or not exec_.get("command", "").endswith("kubelogin"):
            continue
        args = list(exec_.get("args") or [])
        if "--login" in args:
            args[args.index("--login") + 1] = login_mode
        else:
            args += ["--login", login_mode]
        exec_["args"] = args
    return yaml.safe_dump(config, sort_keys=False)
