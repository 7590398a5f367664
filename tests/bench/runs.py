# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What `make bench` runs and how it is measured: child processes (wall time, peak RSS of the child tree), the
wcce_request module as its own process (`python plugins/modules/wcce_request.py args.json`, the way Ansible runs
it), Certipy `req -dcom`, batches over one session, the certificate role over a fleet of local hosts, and the lab
CA's own cost per request (in-process, on a private copy of the lab state)."""

import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
MODULE = os.path.join(ROOT, 'plugins', 'modules', 'wcce_request.py')
CERTIPY = os.path.join(ROOT, '.venv-certipy', 'bin', 'certipy')
PYTHON = os.environ.get('ADCS_PYTHON', sys.executable)
FLEET_PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fleet.yml')

# Runs argv as a child, waits, and prints the wall time and the peak RSS (KiB) of the child process tree.
_MEASURE = r'''
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                      cwd=sys.argv[1])
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({'rc': proc.returncode, 'wall': wall, 'maxrss_kib': usage.ru_maxrss,
                  'output': proc.stdout.decode('utf-8', 'replace')[-4000000:]}))
'''


def measure(argv, cwd, env=None, timeout=1800):
    out = subprocess.run([sys.executable, '-c', _MEASURE, cwd] + list(argv), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, check=True, timeout=timeout)
    return json.loads(out.stdout.decode())


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


def load_average():
    return os.getloadavg()[0]


def enroller_identity(lab, who='enroller'):
    acct = lab['accounts'][who]
    return {'username': '%s@%s' % (acct['username'], lab['domain']), 'password': acct['password']}


def discovery_connection(lab):
    """The CA found in Active Directory (as the issue's figure: domain discovery)."""
    return dict(enroller_identity(lab), domain=lab['domain'], domain_controller=lab['dc']['address'],
                ca_bundle=lab['ca_bundle'])


def direct_connection(lab):
    return dict(enroller_identity(lab), ca_host=lab['ca']['address'], ca_name=lab['ca']['name'],
                ca_bundle=lab['ca_bundle'])


# Set by the shell of this machine for the tools it runs, not what a managed host's sshd gives a module: the module
# processes of the figures run without them (a row of the table shows what each costs when it is passed on).
SHELL_ONLY = ('PYTHONUNBUFFERED', 'PYTHONDONTWRITEBYTECODE')


def module_env():
    """The module's environment: the collection importable from its sources, as a managed host runs it (run_module
    drops every __pycache__ of the collection first: AnsiballZ ships sources only, so Python's own bytecode never
    helps; what the module keeps itself, the compiled-code cache next to the policy cache, counts as it does there)."""
    env = dict(os.environ)
    for name in SHELL_ONLY:
        env.pop(name, None)
    env['PYTHONPATH'] = COLLECTIONS
    return env


def run_module(args, workdir):
    """wcce_request as its own process with ``args``; returns the measure dict with the parsed ``result``."""
    path = os.path.join(workdir, 'args-%d.json' % int(time.monotonic() * 1e6))
    with open(path, 'w') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_tmpdir=workdir, _ansible_remote_tmp=workdir)}, handle)
    for top, dirs, _files in os.walk(os.path.join(ROOT, 'plugins')):
        if '__pycache__' in dirs:
            shutil.rmtree(os.path.join(top, '__pycache__'), ignore_errors=True)
    out = measure([PYTHON, MODULE, path], workdir, module_env())
    text = out['output']
    out['result'] = json.loads(text[text.index('{'):]) if '{' in text else {'failed': True, 'msg': text}
    return out


def certificate_args(lab, workdir, name, connection=None, **extra):
    args = dict(connection or discovery_connection(lab), template='WebServer',
                common_name='%s.lab.adcs.test' % name,
                private_key_path=os.path.join(workdir, name + '.key'),
                certificate_path=os.path.join(workdir, name + '.crt'),
                state_path=os.path.join(workdir, name + '.crt.adcs.json'))
    args.update(extra)
    return args


def certipy_run(lab, workdir, name, key_type='rsa'):
    ident = enroller_identity(lab)
    argv = [CERTIPY, 'req', '-u', ident['username'], '-p', ident['password'], '-target-ip', lab['ca']['address'],
            '-ca', lab['ca']['name'], '-template', 'WebServer', '-dcom', '-out', name]
    if key_type == 'rsa':
        argv += ['-key-size', '2048']
    out = measure(argv, workdir)
    out['ok'] = out['rc'] == 0 and os.path.exists(os.path.join(workdir, name + '.pfx'))
    return out


def certipy_wire(lab, workdir, name='certipy-wire'):
    """Certipy `req -dcom` (RSA 2048) with its DCE/RPC traffic counted (certipy_wire.py wraps impacket's TCP
    transport): connections, PDUs each way, bytes, handshakes and the time from the first connect to the last PDU."""
    ident = enroller_identity(lab)
    out = os.path.join(workdir, name + '.json')
    argv = [os.path.join(os.path.dirname(CERTIPY), 'python'), os.path.join(os.path.dirname(FLEET_PLAYBOOK),
                                                                           'certipy_wire.py'), out,
            'req', '-u', ident['username'], '-p', ident['password'], '-target-ip', lab['ca']['address'],
            '-ca', lab['ca']['name'], '-template', 'WebServer', '-dcom', '-out', name, '-key-size', '2048']
    run = measure(argv, workdir)
    if run['rc'] != 0 or not os.path.exists(out):
        return {'ok': False, 'output': run['output'][-2000:]}
    with open(out) as handle:
        figures = json.load(handle)
    figures['ok'] = os.path.exists(os.path.join(workdir, name + '.pfx'))
    return figures


def batch_args(lab, workdir, count, key_type, template):
    requests = []
    for index in range(count):
        entry = {'common_name': 'batch%d.lab.adcs.test' % index,
                 'private_key_path': os.path.join(workdir, 'batch%d.key' % index),
                 'certificate_path': os.path.join(workdir, 'batch%d.crt' % index)}
        if key_type == 'ecdsa':
            entry.update(key_type='ecdsa', curve='secp256r1')
        requests.append(entry)
    return dict(direct_connection(lab), template=template, requests=requests)


def core_throughput(lab, count, key_type='rsa', template='WebServer'):
    """``count`` PKCS#10 requests (CSRs built beforehand) over one authenticated DCOM session, in this process:
    (issued, seconds of the requests, wire figures of the session or None)."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _auth, _csr, _dcom, _keys, _wcce
    stats = wire_stats()
    csrs = []
    for index in range(count):
        key = _keys.generate_private_key(key_type, 2048, 'secp256r1')
        csrs.append(_csr.build_csr(key, subject={'CN': 'core%d.lab.adcs.test' % index},
                                   sans=['DNS:core%d.lab.adcs.test' % index]))
    ident = lab['accounts']['enroller']
    auth = _auth.PasswordAuth(ident['username'], lab['domain'], ident['password'])
    if stats is not None:
        stats.reset()
    with _dcom.DcomSession(lab['ca']['address'], auth, timeout=30) as session:
        client = _wcce.CertRequestClient(session, lab['ca']['name'])
        start = time.perf_counter()
        issued = sum(1 for csr in csrs if client.request(template, csr).issued)
        wall = time.perf_counter() - start
    return issued, wall, wire_figures() if stats is not None else None


def wire_stats():
    """The wire helper's counters (_rpc_stats.WIRE_STATS) when that code is present, else None."""
    try:
        from ansible_collections.adcs.enrollment.plugins.module_utils._rpc_stats import WIRE_STATS
    except ImportError:
        return None
    return WIRE_STATS


def wire_figures():
    from ansible_collections.adcs.enrollment.plugins.module_utils._rpc_stats import wire_figures as figures
    return figures()


def one_enrollment_wire(lab):
    """Packets and time of one enrollment on a new session (the wire helper's counters), or None: the CSR (RSA
    2048) is built first; the time runs from opening the session (both connections, activation) through the
    request to the release of the references and the close."""
    stats = wire_stats()
    if stats is None:
        return None
    from ansible_collections.adcs.enrollment.plugins.module_utils import _auth, _csr, _dcom, _keys, _wcce
    key = _keys.generate_private_key('rsa', 2048, None)
    csr = _csr.build_csr(key, subject={'CN': 'wire.lab.adcs.test'}, sans=['DNS:wire.lab.adcs.test'])
    ident = lab['accounts']['enroller']
    auth = _auth.PasswordAuth(ident['username'], lab['domain'], ident['password'])
    stats.reset()
    start = time.perf_counter()
    with _dcom.DcomSession(lab['ca']['address'], auth, timeout=30) as session:
        issued = _wcce.CertRequestClient(session, lab['ca']['name']).request('WebServer', csr).issued
    return dict(wire_figures(), seconds=time.perf_counter() - start, issued=1 if issued else 0)


# ---- the fleet: the certificate role over local hosts -------------------------------------------------------
def ansible_env(forks, inherited=False):
    """The environment of ansible and ansible-playbook for the fleet. Under the local connection every module process
    inherits it, where a real managed host gets its own from sshd: SHELL_ONLY are dropped unless ``inherited`` (with
    PYTHONUNBUFFERED CPython reads a pipelined module's source from stdin one byte per read(2): ~160,000 system calls
    for ping's payload, ~480,000 for wcce_request's; PYTHONDONTWRITEBYTECODE keeps wcce_request's compiled-code cache
    from being written)."""
    env = dict(os.environ)
    if not inherited:
        for name in SHELL_ONLY:
            env.pop(name, None)
    env.update({'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS, 'ANSIBLE_PYTHON_INTERPRETER': PYTHON,
                'ANSIBLE_LOCALHOST_WARNING': '0', 'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_FORKS': str(forks),
                'ANSIBLE_HOST_KEY_CHECKING': '0', 'ANSIBLE_RETRY_FILES_ENABLED': '0', 'ANSIBLE_PIPELINING': '1',
                'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0'})
    return env


def write_fleet(lab, workdir, hosts):
    inventory = os.path.join(workdir, 'fleet.json')
    members = {}
    for index in range(hosts):
        name = 'bench%02d' % (index + 1)
        root = os.path.join(workdir, name)
        os.makedirs(root, exist_ok=True)
        members[name] = {'ansible_connection': 'local', 'certificate_directory': root}
    group_vars = {'ansible_python_interpreter': PYTHON, 'certificate_connection': discovery_connection(lab),
                  'certificate_requests': [{'name': 'web', 'template': 'WebServer',
                                            'common_name': '{{ inventory_hostname }}.lab.adcs.test'}]}
    with open(inventory, 'w') as handle:
        json.dump({'all': {'hosts': members, 'vars': group_vars}}, handle)
    return inventory


def fleet_run(inventory, workdir, forks, playbook=FLEET_PLAYBOOK, inherited=False):
    bindir = os.path.dirname(PYTHON)
    return measure([os.path.join(bindir, 'ansible-playbook'), '-i', inventory, playbook], workdir,
                   ansible_env(forks, inherited))


def fleet_ping(inventory, workdir, forks, inherited=False):
    bindir = os.path.dirname(PYTHON)
    return measure([os.path.join(bindir, 'ansible'), 'all', '-i', inventory, '-m', 'ansible.builtin.ping'],
                   workdir, ansible_env(forks, inherited))


def recap_counts(output):
    """(ok, changed, failed) summed over the PLAY RECAP of ansible-playbook's output."""
    totals = [0, 0, 0]
    for line in output.splitlines():
        if ' : ok=' in line:
            fields = dict(part.split('=') for part in line.split(':', 1)[1].split() if '=' in part)
            for i, key in enumerate(('ok', 'changed', 'failed')):
                totals[i] += int(fields.get(key, 0))
    return tuple(totals)


# ---- the lab CA's own cost per request ----------------------------------------------------------------------
def ca_cost(lab, workdir, count, template='WebServer', key_type='rsa'):
    """The lab CA's work per request, without RPC: ``count`` submissions to a CertificationAuthority opened on a
    private copy of the lab state (same AD, same key); returns (ms per request, directory cache hits/misses)."""
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'lab'))
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'lab', 'tests'))
    from cryptography.hazmat.primitives.asymmetric import ec
    from adcslab.ca import CertificationAuthority, Requester
    from adcslab.ca import testing as T
    from test_policy_wire import restore_lab_cdp
    state = os.path.join(workdir, 'ca-state')
    os.makedirs(state, exist_ok=True)
    for name in ('lab.json', 'accounts.json'):
        shutil.copy(os.path.join(lab['state_dir'], name), os.path.join(state, name))
    shutil.copytree(os.path.join(lab['state_dir'], 'pki'), os.path.join(state, 'pki'), dirs_exist_ok=True)
    ca = CertificationAuthority.open(state)
    try:
        acct = lab['accounts']['enroller']
        who = Requester(user=acct['username'], domain='LAB', sid=acct['sid'], group_sids=[])
        key = ec.generate_private_key(ec.SECP256R1()) if key_type == 'ecdsa' else T.rsa_key()
        csrs = [T.make_csr(key, 'cost%d.lab.adcs.test' % i) for i in range(count)]
        ca.submit(0, 'CertificateTemplate:%s' % template, csrs[0], who)   # warm: first reads of AD
        start = time.perf_counter()
        answers = [ca.submit(0, 'CertificateTemplate:%s' % template, csr, who) for csr in csrs]
        wall = time.perf_counter() - start
        issued = sum(1 for a in answers if a.disposition == 3)
        cache = getattr(getattr(ca, 'ad', None), 'cache', None)
        return {'ms_per_request': 1000.0 * wall / count, 'issued': issued, 'requests': count,
                'cache_hits': getattr(cache, 'hits', None), 'cache_misses': getattr(cache, 'misses', None),
                'usn_reads': getattr(cache, 'usn_reads', None)}
    finally:
        ca.close()
        restore_lab_cdp(lab)
