# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make bench`: enrollment throughput and cost against the lab CA, compared with Certipy `req -dcom`.

Prints one table: certificates per second for N requests over one DCOM session (the collection's core) versus N
Certipy runs (Certipy opens one session per run), and wall time and peak memory (ru_maxrss of the child process
tree) of one `wcce_request` task run by `ansible` versus one `certipy req -dcom`, with the ratios. Run with
`tests/tools/pytest.sh .venv tests/bench -s`. Nothing here asserts on time: the figures are reported, the
enrollments themselves are checked.
"""

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.lab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
CERTIPY = os.path.join(ROOT, '.venv-certipy', 'bin', 'certipy')
PYTHON = os.environ.get('ADCS_PYTHON', sys.executable)
N = int(os.environ.get('ADCS_BENCH_N', '20'))
RUNS = int(os.environ.get('ADCS_BENCH_RUNS', '3'))

# Runs argv as a child, waits, and prints the wall time and the peak RSS (KiB) of the child process tree.
_MEASURE = r'''
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                      cwd=sys.argv[1])
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({'rc': proc.returncode, 'wall': wall, 'maxrss_kib': usage.ru_maxrss,
                  'output': proc.stdout.decode('utf-8', 'replace')[-4000:]}))
'''


def measure(argv, cwd, env=None):
    out = subprocess.run([sys.executable, '-c', _MEASURE, cwd] + list(argv), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, check=True, timeout=600)
    return json.loads(out.stdout.decode())


def ansible_env():
    env = dict(os.environ)
    env.update({'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS, 'ANSIBLE_PYTHON_INTERPRETER': PYTHON,
                'ANSIBLE_LOCALHOST_WARNING': '0', 'ANSIBLE_NOCOLOR': '1'})
    return env


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def core_throughput(lab, n):
    """N PKCS#10 requests (RSA 2048, CSRs built beforehand) over one authenticated DCOM session."""
    from ansible_collections.adcs.enrollment.plugins.module_utils import _auth, _csr, _dcom, _keys, _wcce
    acct = lab['accounts']['enroller']
    csrs = []
    for i in range(n):
        key = _keys.generate_private_key('rsa', 2048)
        csrs.append(_csr.build_csr(key, subject={'CN': 'bench%d.lab.adcs.test' % i},
                                   sans=['DNS:bench%d.lab.adcs.test' % i]))
    auth = _auth.PasswordAuth(acct['username'], lab['domain'], acct['password'])
    start = time.perf_counter()
    issued = 0
    with _dcom.DcomSession(lab['ca']['address'], auth, timeout=30) as session:
        client = _wcce.CertRequestClient(session, lab['ca']['name'])
        for csr in csrs:
            result = client.request('WebServer', csr)
            issued += 1 if result.issued else 0
    wall = time.perf_counter() - start
    return issued, wall


def module_task(lab, tmp, index):
    acct = lab['accounts']['enroller']
    args = {'ca_host': lab['ca']['address'], 'ca_name': lab['ca']['name'], 'ca_bundle': lab['ca_bundle'],
            'username': '%s@%s' % (acct['username'], lab['domain']), 'password': acct['password'],
            'template': 'WebServer', 'common_name': 'bench-task%d.lab.adcs.test' % index,
            'private_key_path': os.path.join(tmp, 'task%d.key' % index),
            'certificate_path': os.path.join(tmp, 'task%d.crt' % index)}
    argv = [os.path.join(os.path.dirname(PYTHON), 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local',
            '-m', 'adcs.enrollment.wcce_request', '-a', json.dumps(args)]
    result = measure(argv, tmp, ansible_env())
    assert result['rc'] == 0, result['output']
    assert os.path.exists(args['certificate_path'])
    return result


def ansible_ping(tmp):
    argv = [os.path.join(os.path.dirname(PYTHON), 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local',
            '-m', 'ansible.builtin.ping']
    result = measure(argv, tmp, ansible_env())
    assert result['rc'] == 0, result['output']
    return result


def certipy_run(lab, tmp, index):
    acct = lab['accounts']['enroller']
    out = 'certipy%d' % index
    argv = [CERTIPY, 'req', '-u', '%s@%s' % (acct['username'], lab['domain']), '-p', acct['password'],
            '-target-ip', lab['ca']['address'], '-ca', lab['ca']['name'], '-template', 'WebServer', '-dcom',
            '-out', out]
    result = measure(argv, tmp)
    assert result['rc'] == 0 and os.path.exists(os.path.join(tmp, out + '.pfx')), result['output']
    return result


def test_bench(lab, tmp_path):
    if not os.path.exists(CERTIPY):
        pytest.fail('Certipy is not installed at %s (make venv creates .venv-certipy)' % CERTIPY)
    tmp = str(tmp_path)
    issued, core_wall = core_throughput(lab, N)
    assert issued == N

    certipy_start = time.perf_counter()
    certipy_runs = [certipy_run(lab, tmp, i) for i in range(N)]
    certipy_total = time.perf_counter() - certipy_start

    tasks = [module_task(lab, tmp, i) for i in range(RUNS)]
    pings = [ansible_ping(tmp) for _i in range(RUNS)]
    certipy_one = certipy_runs[:RUNS]

    core_rate = N / core_wall
    certipy_rate = N / certipy_total
    task_wall = median([t['wall'] for t in tasks])
    task_rss = max(t['maxrss_kib'] for t in tasks) / 1024.0
    cp_wall = median([c['wall'] for c in certipy_one])
    cp_rss = max(c['maxrss_kib'] for c in certipy_one) / 1024.0

    rows = [
        ('certificates/s, %d requests' % N, 'one session: %.1f' % core_rate,
         '%d runs: %.1f' % (N, certipy_rate), core_rate / certipy_rate),
        ('wall time of one enrollment (s, median of %d)' % RUNS, '%.2f (ansible task)' % task_wall,
         '%.2f' % cp_wall, task_wall / cp_wall),
        ('peak memory of one enrollment (MiB)', '%.1f (ansible task)' % task_rss, '%.1f' % cp_rss,
         task_rss / cp_rss),
    ]
    width = max(len(r[0]) for r in rows)
    lines = ['', 'adcs.enrollment vs Certipy req -dcom against the lab CA (%s, RSA 2048, template WebServer)'
             % lab['ca']['address'],
             '%-*s  %-24s  %-14s  %s' % (width, 'measure', 'adcs.enrollment', 'certipy', 'ratio (ours/certipy)')]
    for name, ours, theirs, ratio in rows:
        lines.append('%-*s  %-24s  %-14s  %.2f' % (width, name, ours, theirs, ratio))
    lines.append('baseline: `ansible -m ping` takes %.2f s and %.1f MiB on this machine (ansible-core start-up '
                 'and module transfer, included in the task figures)'
                 % (median([p['wall'] for p in pings]), max(p['maxrss_kib'] for p in pings) / 1024.0))
    lines.append('(peak memory = ru_maxrss of the child process tree: for the ansible task the largest of the '
                 'controller and module processes)')
    print('\n'.join(lines))
