"""http/auth: Bearer keys from a Secret volume."""

from __future__ import annotations

import pytest

from scoring_app.errors import Unauthorized
from scoring_app.http.auth import KeyStore
from tests.app.conftest import SecretDir


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_keystore_both_keys_rotation_and_fail_closed(tmp_path):
    secret = SecretDir(tmp_path / "keys")
    secret.write(primary="p1", secondary="s1")
    clock = Clock()
    store = KeyStore(str(secret.path), recheck_s=1.0, clock=clock)
    store.check("Bearer p1")
    store.check("bearer s1")
    secret.write(primary="p2", secondary="s1")
    clock.now += 1.0
    store.check("Bearer p2")
    with pytest.raises(Unauthorized):
        store.check("Bearer p1")
    secret.write(primary="", secondary="")
    clock.now += 1.0
    with pytest.raises(Unauthorized):
        store.check("Bearer ")
    import shutil
    shutil.rmtree(secret.path)
    clock.now += 1.0
    with pytest.raises(Unauthorized) as gone:
        store.check("Bearer p2")
    assert gone.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_keystore_looks_at_the_files_at_most_once_per_recheck(tmp_path, monkeypatch):
    secret = SecretDir(tmp_path / "keys")
    secret.write(primary="p1")
    clock = Clock()
    store = KeyStore(str(secret.path), recheck_s=1.0, clock=clock)
    import scoring_app.http.auth as auth_module
    looks = []
    real_stat = auth_module.os.stat
    def counting_stat(path, **kwargs):
        if not kwargs:  # the store's look (SecretDir's own checks pass follow_symlinks)
            looks.append(path)
        return real_stat(path, **kwargs)

    monkeypatch.setattr(auth_module.os, "stat", counting_stat)
    for _ in range(5):
        store.check("Bearer p1")
    assert len(looks) == 2  # primary and secondary, once
    secret.write(primary="p2")
    clock.now += 0.9
    store.check("Bearer p1")  # not looked at again yet: the old key holds
    assert len(looks) == 2
    clock.now += 0.1
    store.check("Bearer p2")
    with pytest.raises(Unauthorized):
        store.check("Bearer p1")
    assert len(looks) == 4


@pytest.mark.parametrize("presented", ["p1", "s1", "wrong"])
def test_every_key_is_compared_in_constant_time_whichever_matches(tmp_path, monkeypatch, presented):
    """A compare that stops at the first match (or uses ``==``) would tell a
    timing observer which key, or how much of one, it matched: each stored key
    must go through ``hmac.compare_digest``, whatever was presented."""
    (tmp_path / "primary").write_text("p1")
    (tmp_path / "secondary").write_text("s1")
    import hmac
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    store = KeyStore(str(tmp_path))
    if presented == "wrong":
        with pytest.raises(Unauthorized):
            store.check(f"Bearer {presented}")
    else:
        store.check(f"Bearer {presented}")
    assert sorted(compared) == [(presented.encode(), b"p1"), (presented.encode(), b"s1")]
