"""Fixtures of the browser tests: a project with a member user and a
running instance in the test cloud, Horizon served on 127.0.0.1 by
gunicorn, and Debian's chromium driven by Playwright.

The cloud's admin credentials come from the ``OS_*`` variables that
``python -m tests.e2e.cloud run -- ...`` sets (tools/horizon/run-tests.sh
--browser). Without them the tests are skipped, unless
``SPARC_REQUIRE_CLOUD=1`` makes that a failure.
"""

import hashlib
from importlib import metadata
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))))
ARTIFACTS = os.path.join(REPO, 'artifacts', 'horizon')
VENV_BIN = os.path.dirname(sys.executable)
CHROMIUM = '/usr/bin/chromium'
#: Debian's chromium, headless, talking to nothing but 127.0.0.1.
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu',
                 '--disable-quic', '--no-first-run',
                 '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']
#: Static files collected and compressed once per Horizon version.
STATIC_CACHE = os.environ.get('SPARC_HORIZON_STATIC_CACHE',
                              '/var/tmp/sparc-horizon-static')
SETTINGS = 'sparc_nova.dashboard.tests.browser.settings'
PASSWORD = 'sparc-horizon-' + secrets.token_hex(6)

#: Files of the guest's disk: what the policy removes and what it keeps,
#: and their contents (markers the snapshot is scanned for).
SECRET_FILE = 'srv/secret/token.txt'
SECRET_TEXT = 'sparc-horizon secret token 5f0c2e9d\n'
KEPT_FILE = 'srv/public/readme.txt'
KEPT_TEXT = 'sparc-horizon kept file 8a41b7c3\n'


@pytest.fixture(scope='session')
def cloud_auth():
    """The cloud admin's credentials, from the environment."""
    if not os.environ.get('OS_AUTH_URL'):
        message = ('no test cloud: run tools/horizon/run-tests.sh --browser '
                   '(OS_AUTH_URL is not set)')
        if os.environ.get('SPARC_REQUIRE_CLOUD') == '1':
            pytest.fail(message)
        pytest.skip(message)
    return {
        'auth_url': os.environ['OS_AUTH_URL'],
        'username': os.environ['OS_USERNAME'],
        'password': os.environ['OS_PASSWORD'],
        'project_name': os.environ['OS_PROJECT_NAME'],
        'user_domain_name': os.environ.get('OS_USER_DOMAIN_NAME', 'Default'),
        'project_domain_name': os.environ.get('OS_PROJECT_DOMAIN_NAME',
                                              'Default'),
    }


def connect(auth):
    import openstack
    return openstack.connect(
        region_name=os.environ.get('OS_REGION_NAME', 'RegionOne'),
        identity_api_version='3', **auth)


@pytest.fixture(scope='session')
def admin(cloud_auth):
    conn = connect(cloud_auth)
    yield conn
    conn.close()


class Tenant:
    """A project with one member user, and its own connection."""

    def __init__(self, admin_conn, auth, name):
        ident = admin_conn.identity
        self.name = name
        self.project = ident.create_project(name=name, domain_id='default')
        self.username = name + '-member'
        self.password = PASSWORD
        self.user = ident.create_user(
            name=self.username, password=self.password, domain_id='default',
            default_project_id=self.project.id)
        for role_name in ('member', 'reader'):
            role = ident.find_role(role_name)
            if role is not None:
                ident.assign_project_role_to_user(self.project, self.user,
                                                  role)
        self.conn = connect(dict(auth, username=self.username,
                                 password=self.password, project_name=name))

    def delete(self, admin_conn):
        self.conn.close()
        admin_conn.identity.delete_user(self.user, ignore_missing=True)
        admin_conn.identity.delete_project(self.project, ignore_missing=True)


@pytest.fixture(scope='session')
def tenant(admin, cloud_auth):
    tenant = Tenant(admin, cloud_auth, 'sparc-horizon-' + secrets.token_hex(3))
    yield tenant
    tenant.delete(admin)


@pytest.fixture(scope='session')
def other_tenant(admin, cloud_auth):
    tenant = Tenant(admin, cloud_auth, 'sparc-other-' + secrets.token_hex(3))
    yield tenant
    tenant.delete(admin)


def build_disk(workdir: str) -> str:
    """A small qcow2 disk: ext4 on a partition, holding the files the test
    policy removes and keeps.
    """
    root = os.path.join(workdir, 'root')
    for name, text in ((SECRET_FILE, SECRET_TEXT), (KEPT_FILE, KEPT_TEXT)):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
    raw = os.path.join(workdir, 'disk.raw')
    with open(raw, 'wb') as f:
        f.truncate(64 * 1024 * 1024)
    subprocess.run(['sfdisk', '-q', raw],
                   input=b'label: dos\nstart=2048, type=83\n', check=True)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-E', 'offset=1048576', '-d',
                    root, raw, '%dk' % (63 * 1024)], check=True)
    qcow2 = os.path.join(workdir, 'disk.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw,
                    qcow2], check=True)
    return qcow2


@pytest.fixture(scope='session')
def image(tenant, tmp_path_factory):
    """The member's own (private) image, whose properties require
    ``/home/*/.ssh/**`` to be excluded (the "image" source of the policy).
    """
    disk = build_disk(str(tmp_path_factory.mktemp('disk')))
    img = tenant.conn.image.create_image(
        name='sparc-horizon-disk', filename=disk, disk_format='qcow2',
        container_format='bare', visibility='private', wait=True,
        sparc_exclude_paths='/home/*/.ssh/**')
    yield img
    tenant.conn.image.delete_image(img, ignore_missing=True)


@pytest.fixture(scope='session')
def flavor(admin, tenant):
    """A private flavor of the member's project whose extra specs enforce
    ``keepassxc`` (the operator's part of the policy).
    """
    flv = admin.compute.create_flavor(
        name='sparc.horizon.' + secrets.token_hex(3), ram=256, vcpus=1,
        disk=1, is_public=False)
    admin.compute.flavor_add_tenant_access(flv, tenant.project.id)
    admin.compute.create_flavor_extra_specs(
        flv, {'sparc:exclude_processes': 'keepassxc'})
    yield flv
    admin.compute.delete_flavor(flv, ignore_missing=True)


def raw_image(conn, image, workdir: str) -> bytes:
    """The bytes of the disk in ``image`` as Glance serves it: downloaded,
    and converted to raw by qemu-img when it is not raw.
    """
    path = os.path.join(workdir, image.id)
    with open(path, 'wb') as f:
        response = conn.image.download_image(image, stream=True)
        for chunk in response.iter_content(chunk_size=1 << 20):
            f.write(chunk)
    if image.disk_format != 'raw':
        raw = path + '.raw'
        proc = subprocess.run(['qemu-img', 'convert', '-f', image.disk_format,
                               '-O', 'raw', path, raw],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        path = raw
    with open(path, 'rb') as f:
        return f.read()


def _create_server(conn, name, image, flavor):
    server = conn.compute.create_server(
        name=name, image_id=image.id, flavor_id=flavor.id, networks='none')
    return conn.compute.wait_for_server(server, status='ACTIVE', wait=600)


def snapshots_of(conn, server) -> list:
    """The snapshot images Nova made of ``server`` (Nova records the
    instance in the image property ``instance_uuid``).
    """
    return [i for i in conn.image.images(owner=server.project_id)
            if i.instance_uuid == server.id]


def _delete_server(conn, server):
    images = snapshots_of(conn, server)
    conn.compute.delete_server(server, ignore_missing=True)
    for img in images:
        conn.image.delete_image(img, ignore_missing=True)
    conn.compute.wait_for_delete(server, wait=300)


@pytest.fixture(scope='session')
def server(tenant, image, flavor):
    """A running instance of the member's project."""
    srv = _create_server(tenant.conn, 'privacy-vm', image, flavor)
    yield srv
    _delete_server(tenant.conn, srv)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _static_files(env) -> str:
    """Horizon's static files, collected and compressed offline as a
    deployment does, cached by the versions and the plugin's files.
    """
    key = hashlib.sha256()
    for dist in ('horizon', 'Django', 'django-compressor'):
        key.update(('%s=%s;' % (dist, metadata.version(dist))).encode())
    plugin = os.path.join(REPO, 'sparc_nova', 'dashboard')
    for sub in ('static', 'templates', 'enabled'):
        for root, _dirs, files in sorted(os.walk(os.path.join(plugin, sub))):
            for name in sorted(files):
                with open(os.path.join(root, name), 'rb') as f:
                    key.update(name.encode() + f.read())
    path = os.path.join(STATIC_CACHE, key.hexdigest()[:16])
    if os.path.isdir(path):
        return path
    tmp = path + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    env = dict(env, SPARC_HORIZON_STATIC=tmp)
    admin_cmd = os.path.join(VENV_BIN, 'django-admin')
    for args in (['collectstatic', '--noinput', '-v0'],
                 ['compress', '--force']):
        proc = subprocess.run([admin_cmd] + args, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError('django-admin %s exited %d:\n%s%s'
                               % (' '.join(args), proc.returncode,
                                  proc.stdout[-3000:], proc.stderr[-5000:]))
    os.rename(tmp, path)
    return path


@pytest.fixture(scope='session')
def horizon(cloud_auth):
    """Horizon on 127.0.0.1, by gunicorn: its base URL."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    env = dict(os.environ,
               DJANGO_SETTINGS_MODULE=SETTINGS,
               SPARC_HORIZON_SECRET_KEY=secrets.token_hex(32),
               SPARC_HORIZON_LOG=os.path.join(ARTIFACTS, 'horizon.log'))
    env['SPARC_HORIZON_STATIC'] = _static_files(env)
    port = _free_port()
    with open(os.path.join(ARTIFACTS, 'gunicorn.log'), 'ab') as log:
        proc = subprocess.Popen(
            [os.path.join(VENV_BIN, 'gunicorn'), '--bind',
             '127.0.0.1:%d' % port, '--workers', '1', '--threads', '4',
             '--timeout', '300', '--no-control-socket',
             'sparc_nova.dashboard.tests.browser.wsgi'],
            env=env, stdout=log, stderr=log, cwd=REPO)
    url = 'http://127.0.0.1:%d' % port
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + '/auth/login/') as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('Horizon did not start; see %s'
                                   % os.path.join(ARTIFACTS, 'gunicorn.log'))
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


#: Errors of Horizon's own AngularJS panels that the test cloud causes, not
#: the plugin: it runs no Cinder (the Images panel asks for it), and its
#: Glance has no metadata definitions, on which Horizon 27's
#: /api/glance/metadefs/namespaces/ fails (ThreadPoolExecutor with zero
#: workers) with a 500.
MISSING_SERVICE_ERROR = re.compile(
    r'^Possibly unhandled rejection: Service type is not enabled: '
    r'(block-storage|volume|volumev3|object-store)$')
EMPTY_METADEFS_URL = re.compile(r'/api/glance/metadefs/namespaces/(\?|$)')
EMPTY_METADEFS_REJECTION = (
    'Possibly unhandled rejection: {"data":"max_workers must be greater '
    'than zero","status":500,')


def unexpected(errors: list[dict]) -> list[dict]:
    """``errors`` without the ones the test cloud's missing parts cause."""
    def explained(e):
        if (MISSING_SERVICE_ERROR.match(e['text']) or
                e['text'].startswith(EMPTY_METADEFS_REJECTION)):
            return True
        return (e['text'].startswith('Failed to load resource: the server '
                                     'responded with a status of 500') and
                bool(EMPTY_METADEFS_URL.search(e.get('resource') or '')))
    return [e for e in errors if not explained(e)]


class ConsoleLog:
    """Every console message and page error of the browser."""

    def __init__(self):
        self.entries = []

    def attach(self, page, label):
        page.on('console', lambda m: self.entries.append(
            {'page': label, 'type': m.type, 'text': m.text,
             'url': page.url, 'resource': (m.location or {}).get('url')}))
        page.on('pageerror', lambda e: self.entries.append(
            {'page': label, 'type': 'pageerror', 'text': str(e),
             'url': page.url}))

    def errors(self, label: str) -> list[dict]:
        """The errors of the pages attached with ``label``."""
        return [e for e in self.entries if e['page'] == label and
                e['type'] in ('error', 'pageerror')]


@pytest.fixture(scope='session')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM,
                                      args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope='session')
def console():
    log = ConsoleLog()
    yield log
    os.makedirs(ARTIFACTS, exist_ok=True)
    with open(os.path.join(ARTIFACTS, 'console.json'), 'w') as f:
        json.dump(log.entries, f, indent=2)
