"""Store migrations and transactions; profile loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.config import ProfileError, load_profile, merge_patch, profile_from_dict
from simulator.store import Store, _migrations


def test_new_store_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "bank.db")
    assert store.schema_version == len(_migrations()) >= 1
    assert store.scalar("PRAGMA journal_mode") == "wal"
    store.close()
    again = Store.open(tmp_path / "bank.db")
    assert again.migrate() == again.schema_version  # nothing left to apply


def test_nested_transaction_rolls_back_inner_only() -> None:
    store = Store.open(None)
    with store.transaction():
        store.set_kv("outer", "1")
        with pytest.raises(RuntimeError), store.transaction():
            store.set_kv("inner", "1")
            raise RuntimeError("inner fails")
    assert store.get_kv("outer") == "1"
    assert store.get_kv("inner") is None
    with pytest.raises(RuntimeError), store.transaction():
        store.set_kv("outer2", "1")
        raise RuntimeError
    assert store.get_kv("outer2") is None
    assert not store.in_transaction


def test_default_profile_round_trips_and_has_dev_credentials() -> None:
    profile = load_profile(None)
    assert profile_from_dict(profile.as_dict()) == profile
    assert profile.platforms[0].app_id == "demo-platform"
    assert profile.bank.class_iii.balance_cap == 200_000  # 2000.00 CNY in fen


def test_money_in_profiles_is_never_a_float() -> None:
    data = load_profile(None).as_dict()
    with pytest.raises(ProfileError, match=r"bank\.class_iii\.balance_cap"):
        profile_from_dict(merge_patch(data, {"bank": {"class_iii": {"balance_cap": 2000.5}}}))
    with pytest.raises(ProfileError, match="two decimals"):
        profile_from_dict(merge_patch(data, {"bank": {"class_iii": {"balance_cap": "2000.5"}}}))


def test_profile_errors_name_every_location(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("seed: x\nplatforms: []\nbank: {bin: '12', surprise: 1}\n", encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    text = str(info.value)
    for where in ("seed", "platforms", "bank.bin", "bank.surprise"):
        assert f"  {where}:" in text
    path.write_text("- not a mapping\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="mapping"):
        load_profile(path)


def test_merge_patch_follows_rfc7386() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    assert merge_patch({"a": [1]}, {"a": [2]}) == {"a": [2]}


def test_group_commit_keeps_blocks_atomic_and_commits_on_flush(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "bank.db")
    store.group_commit = True
    with store.transaction():
        store.set_kv("a", "1")
    with pytest.raises(RuntimeError), store.transaction():
        store.set_kv("b", "1")
        raise RuntimeError("this block alone is rolled back")
    with store.transaction():
        store.set_kv("c", "1")
    assert store.has_unflushed
    # Another connection (a restarted process) sees nothing before the flush...
    other = Store.open(tmp_path / "bank.db")
    assert other.get_kv("a") is None
    store.flush()
    assert not store.has_unflushed
    # ...and exactly the blocks that succeeded after it.
    assert [other.get_kv(k) for k in ("a", "b", "c")] == ["1", None, "1"]


def test_group_commit_work_lost_in_a_crash_is_whole_blocks(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "bank.db")
    store.group_commit = True
    with store.transaction():
        store.set_kv("kept", "1")
    store.flush()
    with store.transaction():
        store.set_kv("lost", "1")
    store.conn.close()  # the process dies before the flush: no COMMIT reaches the file
    again = Store.open(tmp_path / "bank.db")
    assert (again.get_kv("kept"), again.get_kv("lost")) == ("1", None)


def test_a_profile_file_is_laid_over_the_packaged_default(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("seed: 7\nbank: {open_active: true}\nbatches: {rates: {'3028': 0.1}}\n",
                    encoding="utf-8")
    mine, default = load_profile(path), load_profile(None)
    assert (mine.seed, mine.bank.open_active, mine.batches.rates) == (7, True, {"3028": 0.1})
    # What the file leaves out keeps the packaged default, magic values included.
    assert mine.batches.rules == default.batches.rules and mine.batches.rules
    assert mine.bank.identity_rules == default.bank.identity_rules
    assert mine.platforms == default.platforms
