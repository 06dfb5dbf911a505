"""The DevStack plugin, phase by phase (``run_plugin.sh``, as stack.sh,
unstack.sh and clean.sh run it), against the configuration files the
test cloud starts from: Nova's own ``api-paste.ini``, a nova.conf, a
glance-api.conf whose database is a fresh SQLite file migrated by the
test cloud's ``glance-manage`` (as DevStack's Glance step does before
the ``extra`` phase). Nova's package is a copy in the test's directory,
so the shim the plugin installs and removes never touches the shared
virtualenv. What each phase should have done is checked after it.
"""

import configparser
import filecmp
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
DRIVER = os.path.join(HERE, 'run_plugin.sh')
CLOUD_VENV = os.environ.get('SPARC_CLOUD_VENV', '/opt/sparc/cloud-venv')
GLANCE_MANAGE = os.path.join(CLOUD_VENV, 'bin', 'glance-manage')
SHIM = os.path.join('nova', 'virt', 'sparc_libvirt', '__init__.py')
FILTERS = 'sparc-nova.filters'


def read_ini(path):
    ini = configparser.RawConfigParser(strict=False, interpolation=None)
    ini.read(path)
    return ini


def tree_digest(root):
    """A digest of every file's path and content under ``root``."""
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(d, name)
            h.update(os.path.relpath(path, root).encode() + b'\0')
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    """A node's files and the plugin's environment (DevStack's local.conf
    variables).
    """
    if not os.path.exists(GLANCE_MANAGE):
        pytest.skip('no test cloud virtualenv (%s): '
                    'bash tests/e2e/cloud/install.sh' % CLOUD_VENV)
    import nova

    root = tmp_path_factory.mktemp('devstack')
    site = root / 'site'
    # Nova's package without its tests, and without a shim installed
    # before: the plugin's own install must put it there.
    shutil.copytree(os.path.dirname(nova.__file__), site / 'nova',
                    ignore=shutil.ignore_patterns('tests', '__pycache__',
                                                  'sparc_libvirt'))
    python = root / 'bin' / 'python3'
    python.parent.mkdir()
    python.write_text('#!/bin/sh\nPYTHONPATH=%s:%s exec %s "$@"\n'
                      % (site, REPO, sys.executable))
    python.chmod(0o755)

    nova_etc = root / 'etc' / 'nova'
    nova_etc.mkdir(parents=True)
    shutil.copy(os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
                nova_etc)
    (nova_etc / 'nova.conf').write_text('[DEFAULT]\ndebug = true\n')
    glance_etc = root / 'etc' / 'glance'
    glance_etc.mkdir(parents=True)
    (glance_etc / 'glance-api.conf').write_text(
        '[database]\nconnection = sqlite:///%s\n' % (root / 'glance.db'))
    env = dict(
        os.environ,
        SPARC_NOVA_PYTHON=str(python),
        SPARC_CLOUD_VENV=CLOUD_VENV,
        NOVA_CONF=str(nova_etc / 'nova.conf'),
        NOVA_CONF_DIR=str(nova_etc),
        NOVA_API_PASTE_INI=str(nova_etc / 'api-paste.ini'),
        GLANCE_CONF_DIR=str(glance_etc),
        GLANCE_API_CONF=str(glance_etc / 'glance-api.conf'),
        SPARC_GLANCE_MANAGE=GLANCE_MANAGE,
        SPARC_MANAGED_SAVE_DIR=str(root / 'save'),
        SPARC_PRIVSEP_HELPER_COMMAND='%s -m oslo_privsep.daemon'
                                     % sys.executable,
        ENABLED_SERVICES='key,n-api,n-cpu,n-cond,g-api,placement-api,'
                         'barbican',
        KEYSTONE_SERVICE_URI='http://192.0.2.10/identity',
        REGION_NAME='RegionTwo',
        SPARC_PLUGIN_CALLS=str(root / 'calls'))
    env.pop('PYTHONPATH', None)
    return root, env


def run_phase(node, *phase):
    root, env = node
    done = subprocess.run(['bash', DRIVER, *phase], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (phase, done.stdout[-2000:],
                                  done.stderr[-4000:])
    return done.stdout


def test_the_plugin_phase_by_phase(node):
    root, env = node
    nova_etc = root / 'etc' / 'nova'
    glance_etc = root / 'etc' / 'glance'
    shim = root / 'site' / SHIM
    filters = nova_etc / 'rootwrap.d' / FILTERS
    paste_before = read_ini(nova_etc / 'api-paste.ini')

    # stack install: the shim in Nova's package, the rootwrap filter.
    assert 'Installing sparc-nova' in run_phase(node, 'stack', 'install')
    assert filecmp.cmp(shim, os.path.join(REPO, SHIM), shallow=False)
    assert filecmp.cmp(filters, os.path.join(
        REPO, 'etc', 'sparc-nova', 'rootwrap.d', FILTERS), shallow=False)
    calls = (root / 'calls').read_text().splitlines()
    assert 'install_bindep %s/bindep.txt' % REPO in calls
    assert 'setup_develop %s' % REPO in calls
    assert 'plugin_requires sparc-nova nova' in calls

    # stack post-config: nova.conf, nova-api's pipeline, Glance.
    run_phase(node, 'stack', 'post-config')
    nova_conf = read_ini(nova_etc / 'nova.conf')
    assert nova_conf.get('DEFAULT', 'compute_driver') == \
        'sparc_libvirt.SparcLibvirtDriver'
    assert nova_conf.get('sparc', 'managed_save_dir') == \
        env['SPARC_MANAGED_SAVE_DIR']
    assert nova_conf.get('sparc_privsep', 'helper_command') == \
        env['SPARC_PRIVSEP_HELPER_COMMAND']
    assert nova_conf.get('DEFAULT', 'debug') == 'true'
    # Barbican enabled: castellan's Barbican backend with Keystone auth.
    assert nova_conf.get('key_manager', 'backend') == 'barbican'
    assert {k: nova_conf.get('barbican', k) for k in (
        'auth_endpoint', 'barbican_endpoint_type',
        'barbican_region_name')} == {
        'auth_endpoint': 'http://192.0.2.10/identity/v3',
        'barbican_endpoint_type': 'public',
        'barbican_region_name': 'RegionTwo'}
    non_inheritable = nova_conf.get(
        'DEFAULT', 'non_inheritable_image_properties').split(',')
    assert {'sparc_scrubbed', 'sparc_policy_digest'} <= {
        p.strip() for p in non_inheritable}
    paste = read_ini(nova_etc / 'api-paste.ini')
    assert paste.has_section('filter:sparc_policy')
    for section in paste_before.sections():
        if not paste_before.has_option(section, 'keystone'):
            continue
        before = paste_before.get(section, 'keystone').split()
        after = paste.get(section, 'keystone').split()
        assert after.index('sparc_policy') > \
            after.index('keystonecontext'), section
        assert [w for w in after if w != 'sparc_policy'] == before
    glance_conf = read_ini(glance_etc / 'glance-api.conf')
    rules = glance_conf.get('DEFAULT', 'property_protection_file')
    assert rules == str(glance_etc / 'property-protections-sparc-nova.conf')
    assert glance_conf.get('DEFAULT',
                           'property_protection_rule_format') == 'roles'
    protections = read_ini(rules)
    assert '^sparc_(scrubbed|policy_digest|scrub_.*)$' in \
        protections.sections()

    # DevStack's Glance step migrates the database before extra.
    subprocess.run([GLANCE_MANAGE, '--config-file',
                    str(glance_etc / 'glance-api.conf'), 'db_sync'],
                   check=True, capture_output=True, timeout=300)

    # stack extra: Nova loads the driver; the metadefs namespace.
    assert 'Checking that Nova loads SparcLibvirtDriver' in run_phase(
        node, 'stack', 'extra')
    with sqlite3.connect(root / 'glance.db') as db:
        namespaces = [r[0] for r in db.execute(
            'SELECT namespace FROM metadef_namespaces')]
    assert 'SPARC::Nova::PrivacyPolicy' in namespaces, namespaces

    # test-config and unstack change nothing.
    before = tree_digest(root / 'etc'), tree_digest(root / 'site')
    run_phase(node, 'stack', 'test-config')
    run_phase(node, 'unstack')
    assert (tree_digest(root / 'etc'), tree_digest(root / 'site')) == \
        before

    # clean: what install put into Nova is gone, the configuration stays.
    run_phase(node, 'clean')
    assert not shim.parent.exists()
    assert not filters.exists()
    assert (root / 'site' / 'nova' / 'virt' / 'libvirt').is_dir()


def test_a_failing_step_fails_the_phase(node):
    root, env = node
    done = subprocess.run(
        ['bash', DRIVER, 'stack', 'post-config'],
        env=dict(env, NOVA_API_PASTE_INI=str(root / 'missing.ini')),
        capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert 'missing.ini' in done.stdout + done.stderr
