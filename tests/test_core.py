"encoder_book.core: quick mode, seeds, data lookup, download with checksums, offline errors."
import hashlib
import importlib
import io
import urllib.error
import zipfile

import pytest
import torch

import encoder_book.core as core
import encoder_book.data as data


def test_quick_switch(monkeypatch):
    monkeypatch.setenv("ENCODER_BOOK_QUICK", "0")
    assert importlib.reload(core).QUICK is False and core.quick(10, 1) == 10
    monkeypatch.setenv("ENCODER_BOOK_QUICK", "1")
    assert importlib.reload(core).QUICK is True and core.quick(10, 1) == 1
    monkeypatch.undo()
    importlib.reload(core)


def test_set_seed_repeats():
    core.set_seed(3); a = torch.randn(4)
    core.set_seed(3); assert torch.equal(a, torch.randn(4))


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    "No local data, an empty cache, and no network."
    monkeypatch.setenv("ENCODER_BOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ENCODER_BOOK_CACHE", str(tmp_path / "cache"))
    def offline(*a, **k): raise urllib.error.URLError("no network in tests")
    monkeypatch.setattr(core.urllib.request, "urlopen", offline)
    return tmp_path


def test_offline_without_copy_is_one_clear_error(isolated):
    with pytest.raises(FileNotFoundError, match="ENCODER_BOOK_DATA"):
        data.load_sst2("dev")


def test_unknown_names_and_splits():
    with pytest.raises(ValueError, match="unknown data file"):
        core.fetch("nope.txt")
    with pytest.raises(ValueError, match="test split"):
        data.load_sst2("test")
    with pytest.raises(ValueError, match="split"):
        data.load_wikitext2("dev")


def test_explicit_and_local_paths(tmp_path, monkeypatch):
    f = tmp_path / "mine.tsv"
    f.write_text("sentence\tlabel\ngood film \t1\nbad\t0\n", encoding="utf-8")
    assert data.load_sst2("dev", path=f) == (["good film ", "bad"], [1, 0])
    with pytest.raises(FileNotFoundError):
        data.load_sst2("dev", path=tmp_path / "missing.tsv")
    (tmp_path / "data" / "wikitext2").mkdir(parents=True)
    (tmp_path / "data" / "wikitext2" / "wiki.valid.tokens").write_text("\n = T = \n\n a b \n", encoding="utf-8")
    monkeypatch.setenv("ENCODER_BOOK_DATA", str(tmp_path / "data"))
    assert data.load_wikitext2("valid") == ["= T =", "a b"]


def _zip_with(member, content):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z: z.writestr(member, content)
    return buf.getvalue()


def test_download_checks_sha_and_caches(isolated, monkeypatch):
    content = b"sentence\tlabel\nfine\t1\n"
    monkeypatch.setitem(core.FILES, "sst2/dev.tsv",
                        (hashlib.sha256(content).hexdigest(), "http://example.invalid/SST-2.zip", "SST-2/dev.tsv"))
    calls = []
    def fake_download(url, dest):
        calls.append(url); dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(_zip_with("SST-2/dev.tsv", content))
    monkeypatch.setattr(core, "_download", fake_download)
    assert data.load_sst2("dev") == (["fine"], [1])
    assert data.load_sst2("dev") == (["fine"], [1]) and len(calls) == 1      # second time: from the cache
    assert not list((isolated / "cache").rglob("*.part"))


def test_corrupt_download_is_rejected(isolated, monkeypatch):
    monkeypatch.setitem(core.FILES, "sst2/dev.tsv", ("0" * 64, "http://example.invalid/SST-2.zip", "SST-2/dev.tsv"))
    monkeypatch.setattr(core, "_download",
                        lambda url, dest: (dest.parent.mkdir(parents=True, exist_ok=True),
                                           dest.write_bytes(_zip_with("SST-2/dev.tsv", b"tampered"))))
    with pytest.raises(ValueError, match="checksum"):
        core.fetch("sst2/dev.tsv")
    assert not (isolated / "cache" / "sst2" / "dev.tsv").exists()
    assert not list((isolated / "cache").rglob("*.part"))


def test_tiny_data_is_deterministic_and_balanced():
    x, y = core.tiny_sentiment(1000, seed=7)
    assert (x, y) == core.tiny_sentiment(1000, seed=7)
    assert 400 < sum(y) < 600 and all(isinstance(t, str) and t for t in x)
    assert len(core.tiny_corpus(25)) == 25


def test_interrupted_download_leaves_nothing(isolated, monkeypatch):
    "A connection that drops half-way: no archive, no temporary file, one clear error."
    class Dropping(io.BytesIO):
        headers = {"Content-Length": "100"}
        def __enter__(self): return self
        def __exit__(self, *a): return False
        def read(self, n=-1):
            if self.tell() >= 10: raise ConnectionResetError("dropped")
            return super().read(10)
    monkeypatch.setattr(core.urllib.request, "urlopen", lambda *a, **k: Dropping(b"x" * 100))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    with pytest.raises(FileNotFoundError, match="could not be downloaded"):
        core.fetch("sst2/dev.tsv")
    left = [p for p in (isolated / "cache").rglob("*") if p.is_file()]
    assert left == []


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "ckpt"
    with core.atomic_dir(target) as d:
        (d / "a.txt").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with pytest.raises(RuntimeError):
        with core.atomic_dir(target) as d:
            (d / "a.txt").write_text("2")
            raise RuntimeError("disk full")
    assert (target / "a.txt").read_text() == "1"  # the old folder, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left
    with core.atomic_dir(target) as d:
        (d / "b.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
