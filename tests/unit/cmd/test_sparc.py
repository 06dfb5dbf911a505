"""The ``sparc`` command's assembly of its command groups."""

import subprocess
import sys

import pytest

from sparc_nova.cmd import sparc


@pytest.mark.parametrize('argv, group', [
    (['checkpoint', 'scrub', 'vm.save'], 'checkpoint'),
    (['--config-file', 'image', 'policy', 'show'], 'policy'),
    (['--debug', '--log-file', 'x.log', 'image', 'scrub'], 'image'),
    (['--config-file=a.conf', 'kernel', 'list'], 'kernel'),
    (['--help'], None),
    (['chekpoint', 'scrub'], None),
    ([], None),
])
def test_requested_group(argv, group):
    assert sparc.requested_group(argv) == group


def test_a_command_imports_only_its_group():
    code = ('import sys\n'
            'from sparc_nova.cmd import sparc\n'
            'parser = sparc.build_parser("checkpoint")\n'
            'print(sorted(m for m in sys.modules\n'
            '             if m.startswith("sparc_nova.cmd.")))\n')
    out = subprocess.run([sys.executable, '-c', code], check=True,
                         capture_output=True, text=True).stdout
    assert 'sparc_nova.cmd.checkpoint' in out
    assert 'sparc_nova.cmd.image' not in out
    assert 'sparc_nova.cmd.policy' not in out


def test_the_whole_parser_has_every_group(capsys):
    with pytest.raises(SystemExit):
        sparc.build_parser().parse_args(['image', '--help'])
    assert 'scrub' in capsys.readouterr().out
