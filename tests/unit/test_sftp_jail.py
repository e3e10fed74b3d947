"""The SFTP jail's path mapping and write policy, without SSH."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.sftp.jail import (
    LAYOUT,
    Failed,
    Jail,
    NotFound,
    PermissionRefused,
    Refusal,
    Target,
    check_mkdir,
    check_remove,
    check_rename,
    check_rmdir,
    is_temp_name,
    upload_target,
    virtual_parts,
    virtual_path,
)

# -- virtual paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "parts"), [
    (b"/", ()),
    (b"", ()),
    (b".", ()),
    (b"upload", ("upload",)),
    (b"/upload//images/./x.jpg", ("upload", "images", "x.jpg")),
    (b"/upload/images/../batches/f.txt", ("upload", "batches", "f.txt")),
    (b"/a/b/../../download", ("download",)),
    ("/下载/文件.txt", ("下载", "文件.txt")),
    (b"/etc/passwd", ("etc", "passwd")),  # absolute paths are inside the jail
    (b"/a\\..\\..\\b", ("a\\..\\..\\b",)),  # backslash is an ordinary character
])
def test_virtual_parts(path: bytes | str, parts: tuple[str, ...]) -> None:
    assert virtual_parts(path) == parts


@pytest.mark.parametrize("path", [b"..", b"/..", b"/../../etc/passwd", b"/upload/../..",
                                  b"a/../../b", b"/./../x", "/上传/../../x"])
def test_climbing_above_the_root_is_refused(path: bytes | str) -> None:
    with pytest.raises(PermissionRefused, match="leaves the jail"):
        virtual_parts(path)


def test_nul_and_invalid_utf8_are_refused() -> None:
    with pytest.raises(PermissionRefused):
        virtual_parts(b"/upload/a\x00b")
    with pytest.raises(NotFound):
        virtual_parts(b"/upload/\xff\xfe")


def test_virtual_path_round_trip() -> None:
    assert virtual_path(()) == "/"
    assert virtual_path(("upload", "images")) == "/upload/images"


# -- names and write policy --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "temp"), [
    ("DF_DEMO01_20260105_001.txt", False), ("DF.txt.part", True), ("DF.txt.tmp", True),
    (".DF.txt", True), ("a.partial", False), ("a.tmpx", False), ("x.jpg", False),
])
def test_temporary_names(name: str, temp: bool) -> None:
    assert is_temp_name(name) is temp
    assert Target("batches", name).temporary is temp


def test_writes_only_directly_in_upload_areas() -> None:
    assert upload_target(("upload", "images", "a.jpg")) == Target("images", "a.jpg")
    assert upload_target(("upload", "batches", "b.txt")) == Target("batches", "b.txt")
    for parts in [(), ("upload",), ("upload", "images"), ("upload", "images", "sub", "a.jpg"),
                  ("upload", "other", "a"), ("a.txt",), ("etc", "passwd")]:
        with pytest.raises(PermissionRefused, match="only in /upload"):
            upload_target(parts)
    for parts in [("download", "returns", "x"), ("download", "statements", "y"), ("download",)]:
        with pytest.raises(PermissionRefused, match="read-only"):
            upload_target(parts)


def test_bad_upload_names_are_refused() -> None:
    with pytest.raises(PermissionRefused, match="control"):
        upload_target(("upload", "images", "a\nb.jpg"))
    with pytest.raises(PermissionRefused, match="longer"):
        upload_target(("upload", "images", "x" * 256))


def test_remove_only_temporary_uploads() -> None:
    assert check_remove(("upload", "batches", "f.txt.part")).name == "f.txt.part"
    with pytest.raises(PermissionRefused, match="only temporary"):
        check_remove(("upload", "batches", "f.txt"))
    with pytest.raises(PermissionRefused):
        check_remove(("download", "returns", "r.txt.tmp"))
    with pytest.raises(PermissionRefused):
        check_remove(("upload", "images"))


def test_rename_from_temporary_names_within_upload() -> None:
    source, destination = check_rename(("upload", "batches", "f.part"), ("upload", "batches", "f"))
    assert source.temporary and not destination.temporary
    with pytest.raises(PermissionRefused, match="only temporary"):
        check_rename(("upload", "batches", "f"), ("upload", "batches", "g"))
    with pytest.raises(PermissionRefused, match="read-only"):
        check_rename(("upload", "batches", "f.tmp"), ("download", "returns", "f"))
    with pytest.raises(PermissionRefused):
        check_rename(("download", "returns", "r.tmp"), ("upload", "batches", "r"))


def test_directories_are_never_created_or_removed() -> None:
    for parts in [("upload", "images", "sub"), ("x",), ("upload", "batches")]:
        with pytest.raises(PermissionRefused):
            check_mkdir(parts)
        with pytest.raises(PermissionRefused):
            check_rmdir(parts)


def test_refusals_carry_their_status() -> None:
    assert PermissionRefused("x").status == "permission_denied"
    assert NotFound("x").status == "no_such_file"
    assert Failed("x").status == "failure"
    assert all(issubclass(c, Refusal) for c in (PermissionRefused, NotFound, Failed))


# -- the jail on disk ------------------------------------------------------------------------


@pytest.fixture
def jail(tmp_path: Path) -> Jail:
    j = Jail(tmp_path / "sftp" / "demo-platform")
    j.ensure_layout()
    return j


def test_layout(jail: Jail) -> None:
    for sub in LAYOUT:
        assert os.path.isdir(os.path.join(jail.root, sub))
    jail.ensure_layout()  # idempotent


def test_resolve_maps_into_the_jail(jail: Jail) -> None:
    assert jail.resolve(b"/") == ((), jail.root)
    parts, local = jail.resolve(b"/upload/images/a.jpg")
    assert parts == ("upload", "images", "a.jpg")
    assert local == os.path.join(jail.root, "upload", "images", "a.jpg")
    assert jail.resolve(b"/etc/passwd")[1] == os.path.join(jail.root, "etc", "passwd")


def test_existing_symlinks_are_never_followed(jail: Jail, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    os.symlink(outside, os.path.join(jail.root, "download", "returns", "out"))
    os.symlink("../statements", os.path.join(jail.root, "download", "returns", "inside"))
    os.symlink(os.path.join(jail.root, "upload"), os.path.join(jail.root, "up"))
    for path in [b"/download/returns/out", b"/download/returns/out/secret",
                 b"/download/returns/inside", b"/download/returns/inside/x", b"/up/images"]:
        with pytest.raises(PermissionRefused, match="symbolic links"):
            jail.resolve(path)
    # The entries that contain the links are still reachable.
    assert jail.resolve(b"/download/returns")[0] == ("download", "returns")


def test_a_jail_under_a_symlinked_directory_works(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    j = Jail(tmp_path / "link" / "p")
    j.ensure_layout()
    assert j.root == os.path.realpath(real / "p")
    assert j.resolve(b"/upload/batches/x")[1] == os.path.join(j.root, "upload", "batches", "x")


# -- properties ------------------------------------------------------------------------------

_segments = st.sampled_from(["..", ".", "", "upload", "images", "download", "etc", "a", "..."])
_path_texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(_segments, st.text(max_size=8)), max_size=12).map("/".join),
)


@given(_path_texts, st.booleans())
def test_random_paths_never_map_outside_the_jail(text: str, as_bytes: bool) -> None:
    root = "/srv/banksim/sftp/demo-platform"
    jail = Jail.__new__(Jail)
    jail.root = root  # the pure part needs no directory
    path: bytes | str = text.encode("utf-8", "surrogatepass") if as_bytes else text
    try:
        parts = virtual_parts(path)
    except Refusal:
        return
    assert all(p not in ("", ".", "..") and "/" not in p and "\x00" not in p for p in parts)
    local = jail.local(parts)
    assert os.path.normpath(local) == local
    assert jail.contains(local)
    assert os.path.commonpath([root, local]) == root


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=40) | _path_texts.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_resolve_on_disk_stays_inside(jail: Jail, raw: bytes) -> None:
    try:
        parts, local = jail.resolve(raw)
    except Refusal:
        return
    real = os.path.realpath(local)
    assert real == local
    assert os.path.commonpath([jail.root, real]) == jail.root
    assert virtual_parts(virtual_path(parts)) == parts
