"""The ``compute_driver`` shim as an installed package.

sparc-nova's wheel carries ``nova/virt/sparc_libvirt/__init__.py`` and
nothing else under ``nova/``: installed next to Nova it makes
``compute_driver = sparc_libvirt.SparcLibvirtDriver`` load, and removing
sparc-nova removes only that module. Proved in a scratch virtualenv that
holds a copy of the installed Nova package (its dependencies come from
the project's virtualenv through a ``.pth`` file, and from Debian's
packages as in the project's virtualenv).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

LOAD = """
import nova.virt
from nova import objects
from nova.virt import driver
objects.register_all()
cls = driver.importutils.import_class(
    'nova.virt.sparc_libvirt.SparcLibvirtDriver')
print(cls.__module__, cls.__name__, cls.__mro__[1].__name__)
print(nova.virt.__file__)
"""


def run(*argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, '%s\n%s\n%s' % (argv, proc.stdout[-3000:],
                                                 proc.stderr[-3000:])
    return proc


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp('wheel')
    run(sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w', str(out), REPO, cwd=REPO)
    [name] = os.listdir(out)
    return os.path.join(out, name)


def test_wheel_holds_only_the_shim_under_nova(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    under_nova = sorted(n for n in names if n.startswith('nova/'))
    assert under_nova == ['nova/virt/sparc_libvirt/__init__.py']
    assert any(n.startswith('sparc_nova/virt/libvirt/driver.py')
               for n in names)


def test_installed_next_to_nova_the_driver_loads(wheel, tmp_path):
    import nova

    venv = tmp_path / 'venv'
    run(sys.executable, '-m', 'venv', '--without-pip',
        '--system-site-packages', str(venv))
    python = str(venv / 'bin' / 'python')
    site = run(python, '-c', 'import sysconfig; '
               'print(sysconfig.get_paths()["purelib"])').stdout.strip()
    nova_copy = os.path.join(site, 'nova')
    shutil.copytree(os.path.dirname(nova.__file__), nova_copy,
                    ignore=shutil.ignore_patterns('tests', '__pycache__'))
    project_site = sysconfig.get_paths()['purelib']
    with open(os.path.join(site, 'project-deps.pth'), 'w') as f:
        f.write(project_site + '\n')
    env = dict(os.environ, PYTHONPATH='')
    env.pop('PYTHONPATH')

    run(sys.executable, '-m', 'pip', '--python', python, 'install', '-q',
        '--no-deps', wheel, env=env, cwd=str(tmp_path))
    assert os.path.isfile(os.path.join(nova_copy, '__init__.py'))
    shim = os.path.join(nova_copy, 'virt', 'sparc_libvirt', '__init__.py')
    assert os.path.isfile(shim) and not os.path.islink(shim)

    out = run(python, '-c', LOAD, env=env, cwd=str(tmp_path)).stdout
    lines = out.splitlines()
    assert lines[0] == ('sparc_nova.virt.libvirt.driver SparcLibvirtDriver '
                        'LibvirtDriver')
    assert lines[1] == os.path.join(nova_copy, 'virt', '__init__.py')

    run(sys.executable, '-m', 'pip', '--python', python, 'uninstall', '-q',
        '-y', 'sparc-nova', env=env, cwd=str(tmp_path))
    assert not os.path.exists(os.path.dirname(shim))
    assert os.path.isfile(os.path.join(nova_copy, '__init__.py'))
    assert os.path.isfile(os.path.join(nova_copy, 'virt', 'driver.py'))
