# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The no-op record: one job, remembering in a certificate's state file that its request fits what is on disk,
so that the next run with the same options and the same files answers without parsing a certificate, without
cryptography and without the network (as make and git trust a recorded digest instead of rebuilding).

``record()`` is made after a run that is not in check mode, for each request whose files fit (issued, renewed or
unchanged, as the no-op planner finds them right after the run: ``_noop.project``), and kept in the state file as
``fits``:

- ``options``: SHA-256 over the request's options (its entry and the module's other options, as a canonical JSON
  text; options marked no_log replaced by whether they are set: a password, a passphrase never enters it), the
  working directory and this format's version;
- ``files``: the request's files (key, certificate, chain, full chain, PKCS#12, CSR) and ``digest``: SHA-256 over
  each one's path, content, permission bits, owner, group, device, inode and ctime (which any chmod, chown, chattr,
  SELinux relabel or write moves, and nobody can set back), or its absence (the key file's content only enters
  this one digest over every file, never a digest of its own); ``ids``: the owner and group names asked for with
  the IDs they had (a name that maps to another ID since is a change);
- ``since``/``until``: when it was recorded and when the certificate's renewal window opens (epoch seconds);
- ``result``: the result of that request as the no-op planner gives it.

``answer()`` gives the results of a whole run when every request's record holds: a state file the effective user
owns and nobody else may write (``_state.State.read``), the same options digest, since <= now < until, no
interrupted write next to the files (a journal) and the same files digest. Anything else - no record, another
version, a file touched, check of a passphrase-protected key, pipe mode, the second call of the certificate role's
run_before - and the run plans as before (and records again). Nothing here decides that a certificate fits: it only
recognises, byte for byte, a situation the planner already decided.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import hashlib
import json
import math
import os
import pwd
import time

from ansible_collections.adcs.enrollment.plugins.module_utils import _files
from ansible_collections.adcs.enrollment.plugins.module_utils import _journal
from ansible_collections.adcs.enrollment.plugins.module_utils import _request_spec
from ansible_collections.adcs.enrollment.plugins.module_utils import _role_entries
from ansible_collections.adcs.enrollment.plugins.module_utils import _state
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError

VERSION = 1
# the files of a request that the no-op decision reads
FILE_OPTIONS = ('private_key_path', 'certificate_path', 'chain_path', 'fullchain_path', 'pkcs12_path', 'csr_path')
# a request with one of these set is never answered from a record (its key or bundle needs the secret to be read)
PASSPHRASES = ('private_key_passphrase', 'pkcs12_passphrase')


def secret_names(argument_spec):
    """The names of the options marked no_log anywhere in ``argument_spec`` (suboptions included)."""
    names = set()
    for name, option in argument_spec.items():
        if option.get('no_log'):
            names.add(name)
        if isinstance(option.get('options'), dict):
            names.update(secret_names(option['options']))
    return names


def _scrubbed(value, secrets):
    if isinstance(value, dict):
        return dict((k, (v not in (None, '')) if k in secrets else _scrubbed(v, secrets)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v, secrets) for v in value]
    return value


# module options that are not one request's: the lists of requests, and what the role passes back after commands
NOT_OPTIONS = ('requests', 'certificates', 'run_before_results')


def request_digest(params, request, secrets):
    """options_digest() of one request: the module's options ``params`` (one connection's, in the certificate role's
    case) without the request lists, and ``request``, the entry of ``requests`` (None: the top-level options are the
    request). A change in another request's entry does not touch this one's record."""
    return options_digest(dict([(k, v) for k, v in params.items() if k not in NOT_OPTIONS], request=request),
                          secrets)


def options_digest(params, secrets):
    """SHA-256 (hex) of the options ``params`` without the values of the options named in ``secrets`` (only
    whether each is set), with the working directory (relative paths) and this format's version."""
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    text = json.dumps([VERSION, cwd, _scrubbed(params, secrets)], sort_keys=True, default=str,
                      separators=(',', ':'))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def request_files(spec):
    """The files of a request (normalized by ``_request_spec.check_request``) that its no-op decision reads."""
    return [spec[key] for key in FILE_OPTIONS if spec.get(key)]


def files_digest(paths):
    """SHA-256 (hex) over each file of ``paths``: path, permission bits, owner, group and content, or its absence;
    None when one cannot be read as a regular file (never through a symbolic link)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(json.dumps(path).encode('utf-8'))
        attrs = []
        try:
            data = _files.read_file(path, stat_out=attrs)
        except AdcsError:
            return None
        if data is None:
            digest.update(b'\0absent\0')
            continue
        st = attrs[0]   # ctime: any chmod, chown, chattr, relabel or write since (nobody can set it back)
        digest.update(('\0%o %d %d %d %d %d %d\0' % (st.st_mode & 0o7777, st.st_uid, st.st_gid, len(data), st.st_dev,
                                                     st.st_ino, st.st_ctime_ns)).encode('ascii'))
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def owner_ids(owner, group):
    """[owner, uid, group, gid] of the owner and group names a request asks for (None where it asks none), or None
    when a name is unknown: a name that maps to another ID than when it was recorded is a change."""
    out = [owner, None, group, None]
    try:
        if owner not in (None, ''):
            out[1] = int(owner) if str(owner).isdigit() else pwd.getpwnam(owner).pw_uid
        if group not in (None, ''):
            out[3] = int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        return None
    return out


def record(options, spec, result, until, now=None, files_before=None):
    """The ``fits`` record of a request (``spec``) whose no-op ``result`` holds until ``until`` (a datetime: the
    opening of the renewal window), or None when the request is not one a record may answer (``files_before``: the
    files digest taken before the result was planned; they must not have changed since)."""
    if any(spec.get(key) for key in PASSPHRASES) or result.get('warnings') or result.get('changed') or \
            result.get('failed'):
        return None
    paths = request_files(spec)
    digest = files_digest(paths)
    ids = owner_ids(spec.get('owner'), spec.get('group'))
    if digest is None or ids is None or (files_before is not None and files_before != digest):
        return None
    return {'version': VERSION, 'options': options, 'files': paths, 'digest': digest, 'ids': ids,
            'since': time.time() if now is None else now, 'until': until.timestamp(), 'result': result}


def held(fits, options, now=None):
    """The result a record ``fits`` answers when it holds for ``options`` now, else None."""
    if not isinstance(fits, dict) or fits.get('version') != VERSION or fits.get('options') != options:
        return None
    now = time.time() if now is None else now
    since, until, paths, ids = fits.get('since'), fits.get('until'), fits.get('files'), fits.get('ids')
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (since, until)) \
            or not since <= now < until:
        return None
    if not isinstance(ids, list) or len(ids) != 4 or owner_ids(ids[0], ids[2]) != ids:
        return None
    if not isinstance(paths, list) or not all(isinstance(p, str) and os.path.isabs(p) for p in paths):
        return None
    if _journal.interrupted(paths) or files_digest(paths) != fits.get('digest'):
        return None
    result = fits.get('result')
    return result if isinstance(result, dict) else None


def answer(requests, now=None):
    """The results of a run whose requests are ``requests`` (in order: (state file, request_digest())) when every
    one's record holds, else None."""
    if not requests or not all(path for path, _digest in requests):
        return None
    out = []
    for path, digest in requests:
        state = _state.State.read(path)   # a state file of a newer version raises: the run reports it
        if state.warnings or not isinstance(state.data, dict):
            return None
        result = held(state.data.get('fits'), digest, now)
        if result is None:
            return None
        out.append(result)
    return out


def answer_run(params, secrets, check_mode, now=None):
    """What wcce_request returns (``results`` and, for the certificate role's ``certificates``, its other return
    values) when every request of the run is answered by its record, else None. ``secrets``: secret_names() of the
    module's argument spec."""
    if params.get('pipe') or params.get('state_content') or params.get('run_before_results') is not None:
        return None
    try:
        if params.get('certificates'):
            return _role_entries.answered(params, check_mode, lambda requests: answer(
                [(path, request_digest(group, request, secrets)) for path, group, request in requests], now))
        entries = params.get('requests') or [None]
        results = answer([(_request_spec.absolute(merged.get('state_path')), request_digest(params, entry, secrets))
                          for merged, entry in zip(_request_spec.merged_requests(params), entries)], now)
    except Exception:   # whatever it is (a corrupt or hostile state, a newer version): the planner decides and reports
        return None
    return None if results is None else {'results': results}
