"""Reading a Pulumi stack's outputs, for the laptop tools that take ``--stack``."""
import json
import subprocess


class StackOutputError(Exception):
    """The outputs could not be read; the message says what to do instead."""


def stack_outputs(stack: str, names: tuple[str, ...], *, show_secrets: bool = False,
                  instead: str, missing_hint: str = "") -> tuple[str, ...]:
    """The named outputs of ``stack``, in order, through ``pulumi stack output --json``.

    ``instead`` names the flags that replace the stack (said when the CLI is absent);
    ``missing_hint`` is added when an output is not there.
    """
    cmd = ["pulumi", "stack", "output", "--json", *(["--show-secrets"] if show_secrets else []),
           "--stack", stack]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise StackOutputError(f"the pulumi CLI is not on PATH; use {instead}") from None
    if done.returncode != 0:
        raise StackOutputError(f"pulumi stack output failed: {done.stderr.strip()}")
    try:
        outputs = json.loads(done.stdout)
        return tuple(outputs[name] for name in names)
    except (ValueError, KeyError, TypeError):
        raise StackOutputError(f"stack {stack!r} has no {'/'.join(names)} output"
                               f"{'s' if len(names) > 1 else ''}{missing_hint}") from None
