"""The lab CA's directory cache (adcslab.ca.directory.DirectoryCache): reads are reused only for a short time and
only while the directory's change number (highestCommittedUSN) is unchanged; the lab AD test checks that a real
read is cached and that a write to AD is seen by the next read."""

import pytest

from adcslab.ca.directory import DirectoryCache, DirectoryConfig, LabDirectory


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _cache(seconds=30):
    state = {"usn": 1, "loads": 0}
    clock = _Clock()

    def load():
        state["loads"] += 1
        return {"value": state["loads"]}

    return DirectoryCache(seconds, lambda: state["usn"], clock), state, clock, load


def test_a_read_is_reused_while_nothing_changed_and_not_longer_than_its_lifetime():
    cache, state, clock, load = _cache()
    assert cache.get("t", load) == {"value": 1}
    assert cache.get("t", load) == {"value": 1} and state["loads"] == 1 and cache.hits == 1
    clock.now += 31
    assert cache.get("t", load) == {"value": 2}


def test_a_change_in_the_directory_drops_every_read():
    cache, state, clock, load = _cache()
    cache.get("t", load)
    cache.get("u", load)
    state["usn"] = 2
    assert cache.get("u", load) == {"value": 3} and cache.get("t", load) == {"value": 4}


def test_invalidate_and_a_zero_lifetime():
    cache, state, clock, load = _cache()
    cache.get("t", load)
    cache.invalidate()
    assert cache.get("t", load) == {"value": 2}
    off, state, clock, load = _cache(seconds=0)
    assert [off.get("t", load), off.get("t", load)] == [{"value": 1}, {"value": 2}]


def test_callers_cannot_change_what_is_cached():
    cache, state, clock, load = _cache()
    cache.get("t", load)["value"] = "changed"
    assert cache.get("t", load) == {"value": 1}


@pytest.mark.lab
def test_lab_reads_are_cached_and_a_write_is_seen(lab):
    from ldap3 import MODIFY_REPLACE

    directory = LabDirectory(DirectoryConfig.discover(lab["state_dir"]), cache_seconds=30)
    writer = LabDirectory(DirectoryConfig.discover(lab["state_dir"]), cache_seconds=0)
    dn = "CN=WebServer4096,CN=Certificate Templates,CN=Public Key Services,CN=Services," + lab["config_dn"]

    def minimal(entries):
        return [bytes(v) for k, vs in entries[0]["raw_attributes"].items() if k == "msPKI-Minimal-Key-Size"
                for v in vs]

    def set_min(value):
        assert writer._call(lambda conn: conn.modify(dn, {"msPKI-Minimal-Key-Size": [(MODIFY_REPLACE, [value])]}))

    try:
        assert minimal(directory.template_entries("WebServer4096")) == [b"4096"]
        hits = directory.cache.hits
        directory.template_entries("WebServer4096")
        assert directory.cache.hits == hits + 1 or directory.cache.misses > 1   # another writer may bump the USN
        set_min("2048")
        assert minimal(directory.template_entries("WebServer4096")) == [b"2048"]
    finally:
        set_min("4096")
        directory.close()
        writer.close()
