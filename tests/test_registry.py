import functools
import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ideud.models import registry  # noqa: E402
from ideud.models.gfpgan import GFPGANv1Clean  # noqa: E402
from ideud.tools import models_cli  # noqa: E402

TINY = dict(narrow=0.125, num_style_feat=32)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local HTTP server over a directory holding a reduced-width GFPGAN checkpoint."""
    root = tmp_path_factory.mktemp("srv")
    torch.manual_seed(0)
    net = GFPGANv1Clean(**TINY)
    state = net.state_dict()
    # Official layout: EMA weights under params_ema; a decoy under params must not be chosen.
    torch.save({"params_ema": state, "params": {k: torch.zeros_like(v) for k, v in state.items()}}, root / "tiny.pth")
    (root / "other.pth").write_bytes(b"not the file you are looking for" * 100)
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "root": root, "state": state}
    httpd.shutdown()
    httpd.server_close()


def _entry(server, name="tiny-gfpgan", path="tiny.pth", sha="auto", size="auto"):
    f = server["root"] / path
    return registry.ModelEntry(
        name=name,
        filename=f"{name}.pth",
        url=f"{server['url']}/{path}",
        sha256=hashlib.sha256(f.read_bytes()).hexdigest() if sha == "auto" else sha,
        size=f.stat().st_size if size == "auto" else size,
        licence="test",
        arch="gfpgan_v1_clean",
        arch_kwargs=TINY,
    )


@pytest.fixture
def tiny(server):
    entry = registry.register(_entry(server), replace=True)
    yield entry
    registry.unregister(entry.name)


def _no_temp_files(d: Path):
    return not [p for p in d.iterdir() if p.name.endswith(".part")]


def test_fetch_verify_corrupt_refetch_load(tiny, server, tmp_path):
    assert registry.verify(tiny.name, tmp_path).status == "missing"
    path = registry.fetch(tiny.name, tmp_path, progress=False)
    assert path == tmp_path / tiny.filename and path.is_file()
    assert registry.verify(tiny.name, tmp_path).status == "ok"
    assert _no_temp_files(tmp_path)

    net = registry.load_model(tiny.name, tmp_path)
    got = net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in server["state"].items())  # params_ema, strict

    # Flip one byte in place: same size, so only the hash can tell.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    res = registry.verify(tiny.name, tmp_path)
    assert res.status == "hash-mismatch" and not res.usable
    with pytest.raises(registry.ModelUnavailable, match="models fetch"):
        registry.load_model(tiny.name, tmp_path)  # never loaded
    registry.ensure(tiny.name, tmp_path, download=True, progress=False)
    assert registry.verify(tiny.name, tmp_path).status == "ok"

    # Truncated file: detected by size, refetched by fetch().
    path.write_bytes(path.read_bytes()[:1000])
    assert registry.verify(tiny.name, tmp_path).status == "size-mismatch"
    registry.fetch(tiny.name, tmp_path, progress=False)
    assert registry.verify(tiny.name, tmp_path).ok
    registry.load_model(tiny.name, tmp_path)


def test_download_with_wrong_hash_leaves_nothing(server, tmp_path):
    entry = registry.register(_entry(server, name="tiny-bad", sha="0" * 64), replace=True)
    try:
        with pytest.raises(registry.ModelUnavailable, match="SHA-256"):
            registry.fetch(entry.name, tmp_path, progress=False)
        assert not (tmp_path / entry.filename).exists()
        assert _no_temp_files(tmp_path)
    finally:
        registry.unregister(entry.name)


def test_offline_gives_one_line_error(server, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = registry.register(
        registry.ModelEntry("tiny-offline", "x.pth", f"http://127.0.0.1:{port}/x.pth", None, None, "test", "gfpgan_v1_clean"),
        replace=True,
    )
    try:
        with pytest.raises(registry.ModelUnavailable) as e:
            registry.fetch(entry.name, tmp_path, progress=False, timeout=5)
        msg = str(e.value)
        assert "\n" not in msg and "cannot download tiny-offline" in msg and "offline" in msg
        assert _no_temp_files(tmp_path)
    finally:
        registry.unregister(entry.name)


def test_entry_without_hash_is_reported_unverified(server, tmp_path):
    entry = registry.register(_entry(server, name="tiny-nohash", sha=None), replace=True)
    try:
        registry.fetch(entry.name, tmp_path, progress=False)
        res = registry.verify(entry.name, tmp_path)
        assert res.status == "unverified" and "no published SHA-256" in res.message
        assert res.usable
    finally:
        registry.unregister(entry.name)


class Payload:
    """Any non-tensor class: unpickling it would import and run code."""


def test_weights_only_refuses_code_in_checkpoints(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"params_ema": Payload()}, bad)
    with pytest.raises(registry.ModelUnavailable, match="cannot read checkpoint"):
        registry.load_state_dict(bad)


def test_models_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("IDEUD_MODELS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert registry.default_models_dir() == tmp_path / "xdg" / "ideud"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert registry.default_models_dir() == tmp_path / "home" / ".cache" / "ideud"
    monkeypatch.setenv("IDEUD_MODELS_DIR", str(tmp_path / "override"))
    assert registry.default_models_dir() == tmp_path / "override"
    assert registry.resolve_models_dir(tmp_path / "cli") == tmp_path / "cli"


def test_builtin_entries():
    for name in ("GFPGANv1.3", "GFPGANv1.4", "parsing_bisenet"):
        e = registry.get_entry(name)
        assert e.url.startswith("https://github.com/") and e.url.endswith("/" + e.filename)
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256)
        assert e.size and e.licence
    assert registry.REGISTRY[registry.DEFAULT_GAN].arch == "gfpgan_v1_clean"
    with pytest.raises(ValueError):
        registry.register(registry.get_entry("GFPGANv1.4"))  # no silent replacement
    with pytest.raises(registry.ModelUnavailable, match="unknown model"):
        registry.get_entry("GFPGANv9")


# --- CLI ---------------------------------------------------------------------


def test_cli_list_fetch_verify(tiny, tmp_path, capsys):
    d = str(tmp_path)
    assert models_cli.main(["list", "--models-dir", d]) == 0
    out = capsys.readouterr().out
    assert "GFPGANv1.4" in out and re.search(r"tiny-gfpgan .* absent", out)

    assert models_cli.main(["--models-dir", d, "fetch", tiny.name, "--no-progress"]) == 0
    assert "OK" in capsys.readouterr().out
    assert models_cli.main(["verify", "--models-dir", d]) == 0
    assert re.search(r"tiny-gfpgan: OK", capsys.readouterr().out)

    p = tmp_path / tiny.filename
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x01  # same size: only the hash can tell
    p.write_bytes(bytes(data))
    assert models_cli.main(["verify", tiny.name, "--models-dir", d]) == 1
    assert "does not match" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,code,needle",
    [
        ([], 2, "choose a command"),
        (["frobnicate"], 2, "invalid choice"),
        (["fetch"], 2, "name"),
        (["fetch", "GFPGANv9"], 1, "unknown model"),
        (["verify", "GFPGANv9"], 1, "unknown model"),
    ],
)
def test_cli_bad_input_is_one_line(argv, code, needle, tmp_path, capsys):
    assert models_cli.main(argv + ["--models-dir", str(tmp_path)]) == code
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_cli_fetch_offline(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry.register(
        registry.ModelEntry("tiny-off", "o.pth", f"http://127.0.0.1:{port}/o.pth", None, None, "t", "gfpgan_v1_clean"),
        replace=True,
    )
    try:
        assert models_cli.main(["fetch", "tiny-off", "--models-dir", str(tmp_path), "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "cannot download tiny-off" in err
    finally:
        registry.unregister("tiny-off")
