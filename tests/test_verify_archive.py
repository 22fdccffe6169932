"""`voxpipe verify ARCHIVE`: every stored recording re-read against its manifest."""

from __future__ import annotations

import contextlib
import gzip
import io
import json

import pytest
from click.testing import CliRunner

from cxone_env import emulator, ids_of, pipeline_yaml, recordings_dir, run_pipeline
from voxpipe import hookimpl
from voxpipe.archivecheck import check_archive
from voxpipe.archivestore import ArchiveStore, DirectoryStore, StoredEntry
from voxpipe.cli import cli


@pytest.fixture(scope="module")
def archived(tmp_path_factory):
    """A gzip archive and an uncompressed one of the example recordings, made by real runs."""
    tmp = tmp_path_factory.mktemp("verify")
    recs = recordings_dir(tmp)
    ids = ids_of(recs)
    with emulator(recs) as (_, base):
        text = pipeline_yaml(base, ids, tmp / "gz", tmp / "state-gz")
        assert run_pipeline(text).ok
        plain = text.replace("type: gzip", "type: file").replace("level: 1", "").replace(str(tmp / "state-gz"),
                                                                                         str(tmp / "state-file"))
        plain = plain.replace(f"dir: {tmp / 'gz'}", f"dir: {tmp / 'plain'}")
        assert run_pipeline(plain).ok
    return tmp, ids


def copy_of(archived, name, tmp_path):
    import shutil

    return shutil.copytree(archived[0] / name, tmp_path / name)


def rewrite_manifest(stored, **changes):
    manifest = stored.with_name(stored.name + ".json")
    doc = json.loads(manifest.read_text())
    doc.update(changes)
    manifest.write_text(json.dumps(doc))


def restamp(stored):
    """Make the manifest's stored size and SHA-256 match the (tampered) file, so only the
    layer below can notice."""
    import hashlib

    data = stored.read_bytes()
    rewrite_manifest(stored, stored_size=len(data), stored_sha256=hashlib.sha256(data).hexdigest())


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_an_intact_archive_checks_out(archived):
    tmp, ids = archived
    for name in ("gz", "plain"):
        result = invoke("verify", "--json", str(tmp / name))
        report = json.loads(result.stdout)
        assert result.exit_code == 0, result.stdout
        assert report["counts"] == {"ok": len(ids), "missing": 0, "corrupt": 0, "orphan": 0, "bad-manifest": 0}
        assert report["bytes_read"] == sum(p.stat().st_size for p in (tmp / name).iterdir() if not p.name.endswith(".json")
                                           and p.is_file())


def test_every_kind_of_damage_is_found_and_named(archived, tmp_path):
    archive = copy_of(archived, "gz", tmp_path)
    (archive / ".voxpipe").mkdir(exist_ok=True)
    (archive / ".voxpipe" / "ledger.sqlite3").write_bytes(b"state, not archive")
    (archive / ".100009.x.part").write_bytes(b"a temporary")

    flipped = archive / "100001.wav.gz"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))

    crc = archive / "100002.wav.gz"  # a changed byte behind a manifest that was "fixed" to match
    data = bytearray(crc.read_bytes())
    data[-6] ^= 0x01  # inside the CRC-32 trailer
    crc.write_bytes(bytes(data))
    restamp(crc)

    truncated = archive / "100003.mp3.gz"
    truncated.write_bytes(truncated.read_bytes()[:-100])
    restamp(truncated)

    (archive / "100004.opus.gz").unlink()
    (archive / "stray.wav").write_bytes(b"RIFF")
    (archive / "100005.wav.gz.json").write_text("{not json")
    other = archive / "100006.ogg.gz"
    other.write_bytes(gzip.compress(b"other audio"))
    restamp(other)

    result = invoke("verify", "--json", str(archive))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    problems = {p["name"]: (p["status"], p["detail"]) for p in report["problems"]}
    assert problems["100001.wav.gz"][0] == "corrupt" and "stored_sha256" in problems["100001.wav.gz"][1]
    assert problems["100002.wav.gz"][0] == "corrupt" and "gzip layer" in problems["100002.wav.gz"][1]
    assert problems["100003.mp3.gz"] == ("corrupt", problems["100003.mp3.gz"][1])
    assert "gzip layer" in problems["100003.mp3.gz"][1]
    assert problems["100004.opus.gz"][0] == "missing"
    assert problems["stray.wav"][0] == "orphan"
    assert problems["100005.wav.gz.json"][0] == "bad-manifest" and "JSON" in problems["100005.wav.gz.json"][1]
    assert problems["100006.ogg.gz"][0] == "corrupt" and "original_size" in problems["100006.ogg.gz"][1]
    assert set(problems) == {"100001.wav.gz", "100002.wav.gz", "100003.mp3.gz", "100004.opus.gz", "stray.wav",
                             "100005.wav.gz.json", "100006.ogg.gz"}  # hidden state and temporaries are not listed
    assert report["counts"]["ok"] == 0

    human = invoke("verify", str(archive))
    assert human.exit_code == 1
    assert "missing 100004.opus.gz (recording 100004)" in human.stderr
    assert "0 ok, 1 missing, 4 corrupt\n  1 orphan files, 1 unreadable manifests" in human.stderr


def test_a_changed_byte_in_an_uncompressed_file_breaks_its_original_sha256(archived, tmp_path):
    archive = copy_of(archived, "plain", tmp_path)
    stored = archive / "100001.wav"
    data = bytearray(stored.read_bytes())
    data[100] ^= 0x01
    stored.write_bytes(bytes(data))
    restamp(stored)
    report = check_archive(DirectoryStore(archive))
    assert [(p.name, p.status) for p in report.problems] == [("100001.wav", "corrupt")]
    assert "original_sha256" in report.problems[0].detail


def test_an_unreadable_archive_exits_2(tmp_path):
    result = invoke("verify", str(tmp_path / "nope"))
    assert result.exit_code == 2 and "not a directory" in result.stderr
    result = invoke("verify", "mem2://bucket")
    assert result.exit_code == 2 and "no installed plugin reads mem2:// archives" in result.stderr


class MemoryStore(ArchiveStore):
    """An object store in a dict: what an S3 reader implements."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects
        self.location = "mem://archive"

    def entries(self):
        for name in sorted(self.objects):
            yield StoredEntry(name, len(self.objects[name]))

    @contextlib.contextmanager
    def open(self, name):
        if name not in self.objects:
            raise FileNotFoundError(name)
        yield io.BytesIO(self.objects[name])


def test_object_storage_plugs_in_through_the_store_interface(archived, register_plugin):
    tmp, ids = archived
    objects = {f"2026/11/{p.name}": p.read_bytes() for p in (tmp / "gz").iterdir() if p.is_file()}
    objects.pop("2026/11/100002.wav.gz")

    class Plugin:
        @hookimpl
        def register_archive_stores(self, register):
            register("mem", lambda url: MemoryStore(objects))

    with register_plugin(Plugin(), name="memstore"):
        result = invoke("verify", "--json", "mem://archive")
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["archive"] == "mem://archive"
    assert report["counts"]["ok"] == len(ids) - 1
    assert [(p["name"], p["status"]) for p in report["problems"]] == [("2026/11/100002.wav.gz", "missing")]
