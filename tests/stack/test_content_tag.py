"""The image's tag hashes exactly what its build context sends (infra/content_tag.py)."""

from __future__ import annotations

from infra.content_tag import content_tag, context_files
from infra.registry import APP_DIR


def _context(tmp_path):
    context, model = tmp_path / "repo" / "app", tmp_path / "model"
    context.mkdir(parents=True), model.mkdir()
    (context / "Dockerfile").write_text("FROM x\nCOPY . /app\n")
    (context / "server.py").write_text("print('serving')\n")
    (context / ".dockerignore").write_text("# not sent\n\n__pycache__/\n*.log\ndocs/\n!docs/keep.md\n")
    (model / "saved_model.pb").write_bytes(b"graph")
    return context, model


def test_a_file_outside_the_context_leaves_the_tag_as_is(tmp_path):
    context, model = _context(tmp_path)
    tag = content_tag(context, model)
    (tmp_path / "repo" / "tools").mkdir()
    (tmp_path / "repo" / "tools" / "client.py").write_text("import requests\n")  # a sibling of the context
    (tmp_path / "repo" / "README.md").write_text("# above the context\n")
    assert content_tag(context, model) == tag


def test_files_the_dockerignore_excludes_leave_the_tag_and_the_rest_move_it(tmp_path):
    context, model = _context(tmp_path)
    tag = content_tag(context, model)
    (context / "__pycache__").mkdir()
    (context / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"cache")
    (context / "run.log").write_text("noise\n")
    (context / "docs").mkdir()
    (context / "docs" / "notes.md").write_text("not sent\n")
    assert content_tag(context, model) == tag
    assert context_files(context) == [".dockerignore", "Dockerfile", "server.py"]
    (context / "docs" / "keep.md").write_text("sent: the ! exception\n")
    assert content_tag(context, model) != tag
    assert "docs/keep.md" in context_files(context)
    with_keep = content_tag(context, model)
    (context / "server.py").write_text("print('serving v2')\n")
    assert content_tag(context, model) != with_keep


def test_the_scoring_context_holds_the_service_and_none_of_the_laptop_tools():
    sent = context_files(APP_DIR)
    assert {"Dockerfile", "gunicorn.conf.py", "wsgi.py", "requirements.txt"} <= set(sent)
    assert not [f for f in sent if "__pycache__" in f or f.endswith(".pyc")]
    tools = ("client.py", "quickstart.py", "demo_model.py", "samples/")
    assert not [f for f in sent if any(f.endswith(t) or t in f for t in tools)]
    assert (APP_DIR.parent / "scoring_tools" / "client.py").is_file()  # they live outside it


def test_dockerignore_patterns_are_anchored_at_the_context_root_as_dockers_are(tmp_path):
    """Docker matches a bare ``__pycache__/`` at the top only: nested caches need
    ``**/`` (what scoring_app/.dockerignore says), or they are sent and move the tag."""
    context = tmp_path / "app"
    (context / "pkg" / "__pycache__").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM x\n")
    (context / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"cache")
    (context / ".dockerignore").write_text("__pycache__/\n")
    assert "pkg/__pycache__/m.cpython-311.pyc" in context_files(context)
    (context / ".dockerignore").write_text("**/__pycache__\n")
    assert context_files(context) == [".dockerignore", "Dockerfile"]
