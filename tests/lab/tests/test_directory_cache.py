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


def test_the_reads_of_one_request_share_one_change_number_check():
    cache, state, clock, load = _cache()
    with cache.request():
        cache.get("t", load)
        with cache.request():   # nested: joins the outer request
            cache.get("u", load)
        cache.get("t", load)
    assert cache.usn_reads == 1
    state["usn"] = 2             # a change between two requests is seen by the next one
    with cache.request():
        assert cache.get("t", load) == {"value": 3}
        state["usn"] = 3         # a change during a request: seen by the next request, not by this one
        assert cache.get("t", load) == {"value": 3}
    assert cache.usn_reads == 2
    cache.get("t", load)         # outside a request every read checks
    cache.get("t", load)
    assert cache.usn_reads == 4 and cache.get("t", load) == {"value": 4}


def test_request_scopes_are_per_thread():
    import threading

    cache, _state, _clock, load = _cache()
    with cache.request():
        cache.get("t", load)
        worker = threading.Thread(target=lambda: [cache.get("t", load), cache.get("t", load)])
        worker.start()
        worker.join()
        cache.get("t", load)
    assert cache.usn_reads == 3   # this request once, the other thread (outside a request) twice


def _directory_with(entries, state):
    """A LabDirectory whose reads come from ``entries`` (counting them) and whose USN is state["usn"]."""
    directory = LabDirectory(config=None, cache_seconds=30)
    directory.cache = DirectoryCache(30, lambda: state["usn"])
    calls = []

    def template_entries(name=None):
        return directory._cached(("templates", name.lower()), lambda: calls.append(name) or entries[name.lower()])

    directory.template_entries = template_entries
    return directory, calls


def _entry(name, minimal):
    return {"dn": "CN=%s,CN=Certificate Templates" % name,
            "raw_attributes": {"cn": [name.encode()], "msPKI-Cert-Template-OID": [b"1.2.3.4"],
                               "msPKI-Minimal-Key-Size": [str(minimal).encode()], "flags": [b"0"]}}


def test_parsed_templates_are_kept_with_their_read_and_dropped_with_it():
    from adcslab.ca.templates import LdapTemplateSource

    state = {"usn": 1}
    entries = {"t1": [_entry("T1", 2048)]}
    directory, calls = _directory_with(entries, state)
    source = LdapTemplateSource(directory)
    with directory.request():
        first = source.get("T1")
        again = source.get("t1 ")
    assert first.min_key_size == 2048 and again == first and calls == ["T1"]
    entries["t1"] = [_entry("T1", 4096)]   # AD changes: the next request reads and parses again
    state["usn"] = 2
    with directory.request():
        assert source.get("T1").min_key_size == 4096 and len(calls) == 2
    entries["missing"] = []
    assert source.get("missing") is None
