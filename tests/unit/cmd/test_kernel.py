"""``sparc kernel add-debuginfo`` with a real ELF (built by gcc with a
build-id note) and a real .deb built by dpkg-deb, as a -dbg package lays
its vmlinux out.
"""

import os
import subprocess

import pytest

from sparc_nova.cmd import sparc
from sparc_nova.introspect import buildid_cache


@pytest.fixture
def vmlinux(tmp_path):
    src = tmp_path / 'k.c'
    src.write_text('int kernel_symbol = 42;\n')
    out = tmp_path / 'vmlinux'
    subprocess.run(['gcc', '-shared', '-Wl,--build-id=sha1', '-o', str(out),
                    str(src)], check=True)
    readelf = subprocess.run(['readelf', '-n', str(out)], check=True,
                             capture_output=True, text=True).stdout
    build_id = readelf.split('Build ID: ')[1].split()[0]
    return str(out), build_id


def test_elf_build_id_matches_readelf(vmlinux):
    path, build_id = vmlinux
    assert buildid_cache.elf_build_id(path) == build_id


def test_add_vmlinux(vmlinux, tmp_path, capsys):
    path, build_id = vmlinux
    cache = tmp_path / 'cache'
    assert sparc.main(['kernel', 'add-debuginfo', path,
                       '--cache-dir', str(cache)]) == 0
    assert capsys.readouterr().out.split()[0] == build_id
    filed = buildid_cache.BuildIdCache(str(cache)).vmlinux(build_id)
    with open(filed, 'rb') as a, open(path, 'rb') as b:
        assert a.read() == b.read()


def test_add_from_dbg_deb(vmlinux, tmp_path, capsys):
    path, build_id = vmlinux
    root = tmp_path / 'pkg'
    debug = root / 'usr/lib/debug/boot'
    debug.mkdir(parents=True)
    (root / 'usr/share/doc').mkdir(parents=True)
    (root / 'usr/share/doc/readme').write_text('first member\n')
    with open(path, 'rb') as f:
        (debug / 'vmlinux-5.10.0-99-amd64').write_bytes(f.read())
    (root / 'DEBIAN').mkdir()
    (root / 'DEBIAN/control').write_text(
        'Package: linux-image-5.10.0-99-amd64-dbg\nVersion: 1\n'
        'Architecture: amd64\nMaintainer: test <t@example.org>\n'
        'Description: test\n')
    deb = tmp_path / 'linux-image-dbg.deb'
    subprocess.run(['dpkg-deb', '--root-owner-group', '--build', str(root),
                    str(deb)], check=True, capture_output=True)
    cache = tmp_path / 'cache'
    assert sparc.main(['kernel', 'add-debuginfo', str(deb),
                       '--cache-dir', str(cache)]) == 0
    assert capsys.readouterr().out.split()[0] == build_id
    assert os.path.isfile(cache / build_id / 'vmlinux')
    assert not [n for n in os.listdir(cache) if n.startswith('.vmlinux-')]


def test_refuses_a_file_without_build_id(tmp_path, capsys):
    junk = tmp_path / 'vmlinux'
    junk.write_bytes(b'\x7fELF not really')
    cache = tmp_path / 'cache'
    assert sparc.main(['kernel', 'add-debuginfo', str(junk),
                       '--cache-dir', str(cache)]) == 2
    assert 'GNU build-id' in capsys.readouterr().err
    assert os.listdir(cache) == []


def test_refuses_a_deb_without_kernel_image(tmp_path, capsys):
    root = tmp_path / 'pkg'
    (root / 'DEBIAN').mkdir(parents=True)
    (root / 'DEBIAN/control').write_text(
        'Package: empty\nVersion: 1\nArchitecture: all\n'
        'Maintainer: test <t@example.org>\nDescription: test\n')
    deb = tmp_path / 'empty.deb'
    subprocess.run(['dpkg-deb', '--root-owner-group', '--build', str(root),
                    str(deb)], check=True, capture_output=True)
    assert sparc.main(['kernel', 'add-debuginfo', str(deb),
                       '--cache-dir', str(tmp_path / 'cache')]) == 2
    assert 'holds no kernel debug image' in capsys.readouterr().err
