# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_bytecode: the compiled code of the module_utils kept in the enrollment cache, trusted only as the policy cache
is (private directory and files of the effective user), used only for the very source it was compiled from."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib.util
import json
import os
import stat
import subprocess
import sys
import traceback
import zipfile

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _bytecode


@pytest.fixture(autouse=True)
def bytecode_allowed(monkeypatch):
    """Whatever the environment running the tests says (PYTHONDONTWRITEBYTECODE): writing is what is tested here."""
    monkeypatch.setattr(sys, 'dont_write_bytecode', False)


SOURCE = 'VALUE = 41 + 1\n\n\ndef boom():\n    raise RuntimeError("from the cached module")\n'


def cache_dir(tmp_path):
    path = tmp_path / 'cache'
    path.mkdir(mode=0o700)
    os.chmod(str(path), 0o700)
    return str(path)


def sources(tmp_path, text=SOURCE, name='_bc_sample'):
    src = tmp_path / 'src'
    src.mkdir(exist_ok=True)
    (src / (name + '.py')).write_text(text)
    return str(src)


def load(finder, entry, name='_bc_sample'):
    spec = finder.find_spec('%s.%s' % (_bytecode.PACKAGE, name), [entry])
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kept(directory, name='_bc_sample'):
    return os.path.join(directory, '%s%s-%s.bin' % (_bytecode.PREFIX, name, sys.implementation.cache_tag))


def test_compiled_once_then_loaded_from_the_cache(tmp_path):
    directory, entry = cache_dir(tmp_path), sources(tmp_path)
    first = _bytecode.Finder(directory)
    module = load(first, entry)
    assert module.VALUE == 42 and first.misses == 1 and first.hits == 0
    assert module.__file__ == os.path.join(entry, '_bc_sample.py')
    assert os.stat(kept(directory)).st_mode & 0o777 == 0o600
    second = _bytecode.Finder(directory)
    assert load(second, entry).VALUE == 42 and second.hits == 1 and second.misses == 0


def test_a_changed_source_is_compiled_again_and_replaces_the_cached_code(tmp_path):
    directory, entry = cache_dir(tmp_path), sources(tmp_path)
    load(_bytecode.Finder(directory), entry)
    sources(tmp_path, SOURCE.replace('41 + 1', '41 + 2'))
    again = _bytecode.Finder(directory)
    assert load(again, entry).VALUE == 43 and again.misses == 1
    third = _bytecode.Finder(directory)
    assert load(third, entry).VALUE == 43 and third.hits == 1


@pytest.mark.parametrize('damage', ['magic', 'digest', 'marshal', 'truncated', 'not code'])
def test_a_damaged_cache_file_is_never_run(tmp_path, damage):
    directory, entry = cache_dir(tmp_path), sources(tmp_path)
    load(_bytecode.Finder(directory), entry)
    path = kept(directory)
    data = open(path, 'rb').read()
    head = len(_bytecode.MAGIC)
    if damage == 'magic':
        data = b'\0\0\0\0' + data[head:]
    elif damage == 'digest':
        data = data[:head] + b'\0' * 32 + data[head + 32:]
    elif damage == 'marshal':
        data = data[:head + 32] + b'\xff\xfe garbage'
    elif damage == 'truncated':
        data = data[:head + 32 + 5]
    else:
        import marshal
        data = data[:head + 32] + marshal.dumps({'VALUE': 0})
    with open(path, 'wb') as handle:
        handle.write(data)
    finder = _bytecode.Finder(directory)
    assert load(finder, entry).VALUE == 42 and finder.misses == 1 and finder.hits == 0
    assert load(_bytecode.Finder(directory), entry).VALUE == 42   # rewritten: whole again


def test_code_compiled_from_another_source_is_not_run(tmp_path):
    """The cache file of a module holds the code of other text (another version of the module, or planted): the
    digest of the source being imported does not match, so it is compiled from that source instead."""
    directory, entry = cache_dir(tmp_path), sources(tmp_path)
    other = tmp_path / 'other'
    other.mkdir()
    (other / '_bc_sample.py').write_text('VALUE = "planted"\n')
    assert load(_bytecode.Finder(directory), str(other)).VALUE == 'planted'   # kept for the other text
    finder = _bytecode.Finder(directory)
    assert load(finder, entry).VALUE == 42 and finder.hits == 0 and finder.misses == 1


@pytest.mark.parametrize('unsafe', ['file mode', 'directory mode', 'symlinked file', 'symlinked directory'])
def test_a_cache_others_could_have_written_is_not_used(tmp_path, unsafe):
    directory, entry = cache_dir(tmp_path), sources(tmp_path)
    load(_bytecode.Finder(directory), entry)
    path = kept(directory)
    if unsafe == 'file mode':
        os.chmod(path, 0o646)
    elif unsafe == 'directory mode':
        os.chmod(directory, 0o757)
    elif unsafe == 'symlinked file':
        os.rename(path, path + '.real')
        os.symlink(path + '.real', path)
    else:
        os.rename(directory, directory + '.real')
        os.symlink(directory + '.real', directory)
    finder = _bytecode.Finder(directory, write=False)
    assert load(finder, entry).VALUE == 42 and finder.hits == 0 and finder.misses == 1


def test_nothing_is_written_in_check_mode_or_when_python_is_told_not_to(tmp_path, monkeypatch):
    entry = sources(tmp_path)
    missing = str(tmp_path / 'missing' / 'cache')
    assert load(_bytecode.Finder(missing, write=False), entry).VALUE == 42
    assert not os.path.exists(missing)
    assert load(_bytecode.Finder(missing), entry).VALUE == 42   # a missing directory is made private, as the policy
    assert stat.S_IMODE(os.stat(missing).st_mode) == 0o700      # cache makes it
    assert os.listdir(missing) == [os.path.basename(kept(missing))]
    directory = cache_dir(tmp_path)
    load(_bytecode.Finder(directory, write=False), entry)
    assert os.listdir(directory) == []
    monkeypatch.setattr(sys, 'dont_write_bytecode', True)
    load(_bytecode.Finder(directory), entry)
    assert os.listdir(directory) == []
    monkeypatch.setattr(sys, 'dont_write_bytecode', False)
    load(_bytecode.Finder(directory), entry)
    assert os.listdir(directory) == [os.path.basename(kept(directory))]


def test_sources_in_a_zip_as_ansiballz_ships_them(tmp_path):
    archive = str(tmp_path / 'payload.zip')
    with zipfile.ZipFile(archive, 'w') as handle:
        handle.writestr('pkg/_bc_sample.py', SOURCE)
    directory, entry = cache_dir(tmp_path), archive + '/pkg'
    first = _bytecode.Finder(directory)
    module = load(first, entry)
    assert module.VALUE == 42 and module.__file__ == archive + '/pkg/_bc_sample.py' and first.misses == 1
    second = _bytecode.Finder(directory)
    assert load(second, entry).VALUE == 42 and second.hits == 1
    assert second.find_spec('%s._bc_absent' % _bytecode.PACKAGE, [entry]) is None
    assert second.find_spec('%s._bc_sample' % _bytecode.PACKAGE, [str(tmp_path / 'no.zip') + '/pkg']) is None


def test_tracebacks_show_the_source_of_a_cached_module(tmp_path):
    directory, entry = cache_dir(tmp_path), sources(tmp_path)
    load(_bytecode.Finder(directory), entry)
    module = load(_bytecode.Finder(directory), entry)
    with pytest.raises(RuntimeError) as info:
        module.boom()
    text = ''.join(traceback.format_exception(info.type, info.value, info.tb))
    assert 'raise RuntimeError("from the cached module")' in text


def test_only_the_direct_children_of_the_package_are_found(tmp_path):
    finder = _bytecode.Finder(cache_dir(tmp_path))
    entry = sources(tmp_path)
    assert finder.find_spec('json', None) is None
    assert finder.find_spec('other.package._bc_sample', [entry]) is None
    assert finder.find_spec('%s._bc_sample.deeper' % _bytecode.PACKAGE, [entry]) is None
    assert finder.find_spec('%s._bc_sample' % _bytecode.PACKAGE, None) is None


def test_install_follows_the_policy_cache_options(tmp_path):
    try:
        assert _bytecode.install({'policy_cache': False}) is None and _bytecode.installed() is None
        finder = _bytecode.install({'policy_cache': True, 'policy_cache_dir': str(tmp_path)}, check_mode=True)
        assert sys.meta_path[0] is finder and finder.directory == str(tmp_path) and finder.write is False
        again = _bytecode.install({'policy_cache': True, 'policy_cache_dir': None})
        assert _bytecode.installed() is again and sum(isinstance(f, _bytecode.Finder) for f in sys.meta_path) == 1
        assert again.directory == os.environ['ADCS_POLICY_CACHE_DIR'] and again.write is True
    finally:
        _bytecode.uninstall()
    assert _bytecode.installed() is None


def test_a_module_process_compiles_its_module_utils_once(tmp_path):
    """Two runs of a module process with the same cache: the second loads every module_utils it imports from the
    cache (none compiled), and answers as the first did."""
    directory = cache_dir(tmp_path)
    probe = ("import json, sys\n"
             "from ansible_collections.adcs.enrollment.plugins.module_utils import _bytecode\n"
             "finder = _bytecode.install({'policy_cache': True, 'policy_cache_dir': sys.argv[1]})\n"
             "from ansible_collections.adcs.enrollment.plugins.module_utils import _fits, _noop, _enroller\n"
             "print(json.dumps([finder.hits, finder.misses, _noop.__file__]))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    env.pop('PYTHONDONTWRITEBYTECODE', None)
    runs = [json.loads(subprocess.run([sys.executable, '-c', probe, directory], env=env, check=True,
                                      stdout=subprocess.PIPE).stdout.decode()) for _i in range(2)]
    assert runs[0][0] == 0 and runs[0][1] > 20, runs
    assert runs[1][1] == 0 and runs[1][0] == runs[0][1], runs
    assert runs[0][2] == runs[1][2] and runs[1][2].endswith('_noop.py')


def test_a_source_with_its_own_coding_line_is_compiled_as_decoded(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    (src / '_bc_latin.py').write_bytes(b'# -*- coding: latin-1 -*-\nVALUE = "\xe9"\n')
    directory = cache_dir(tmp_path)
    assert load(_bytecode.Finder(directory), str(src), '_bc_latin').VALUE == u'\xe9'
    assert load(_bytecode.Finder(directory), str(src), '_bc_latin').VALUE == u'\xe9'   # from the cache


def test_cached_code_names_the_file_it_is_loaded_from_now(tmp_path):
    """AnsiballZ unpacks to a new directory every run: tracebacks name this run's file, not the first run's."""
    directory = cache_dir(tmp_path)
    first = sources(tmp_path)
    load(_bytecode.Finder(directory), first)
    moved = str(tmp_path / 'moved')
    os.rename(first, moved)
    finder = _bytecode.Finder(directory)
    module = load(finder, moved)
    assert finder.hits == 1 and module.boom.__code__.co_filename == os.path.join(moved, '_bc_sample.py')


def test_optimized_runs_keep_their_own_code(tmp_path, monkeypatch):
    """-O drops asserts: its code is kept apart, as CPython's opt-N files (a normal run never runs -O code)."""
    directory, entry = cache_dir(tmp_path), sources(tmp_path)
    load(_bytecode.Finder(directory), entry)

    class Flags(object):
        optimize = 1
    monkeypatch.setattr(sys, 'flags', Flags())
    optimized = _bytecode.Finder(directory)
    load(optimized, entry)
    assert optimized.misses == 1 and os.path.exists(kept(directory).replace('.bin', '.opt-1.bin'))


def test_what_is_not_a_source_file_is_left_to_python(tmp_path):
    src = tmp_path / 'src'
    (src / '_bc_pkg').mkdir(parents=True)
    os.mkfifo(str(src / '_bc_fifo.py'))
    finder = _bytecode.Finder(cache_dir(tmp_path))
    assert finder.find_spec('%s._bc_pkg' % _bytecode.PACKAGE, [str(src)]) is None
    assert finder.find_spec('%s._bc_fifo' % _bytecode.PACKAGE, [str(src)]) is None   # never blocks on it
