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


@pytest.mark.parametrize('argv, entry', [
    (['checkpoint', 'scrub', 'vm.save'], 'plan'),
    (['--config-file', 'a.conf', 'checkpoint', 'seal', 'x'], 'plan'),
    (['checkpoint', 'save', 'dom', 'x'], 'plan'),
    (['checkpoint', 'ps', 'vm.save'], 'listing'),
    (['--debug', 'checkpoint', 'deps', 'vm.save'], 'listing'),
    (['checkpoint', 'info', 'vm.save'], None),
    (['image', 'scrub', 'disk.qcow2'], None),
    (['checkpoint'], None),
    ([], None),
])
def test_sandboxed_entry(argv, entry):
    from sparc_nova.engine import listings
    from sparc_nova.engine import sandboxed_plan

    expected = {'plan': sandboxed_plan.PLAN_ENTRY,
                'listing': listings.LISTING_ENTRY, None: None}[entry]
    assert sparc.sandboxed_entry(argv) == expected


def test_prepare_name_is_the_engines():
    from sparc_nova.engine import sandbox_calls

    assert sparc.SANDBOX_PREPARE == sandbox_calls.PREPARE_ENTRY


def test_a_sandboxed_command_starts_its_child_first(monkeypatch, tmp_path):
    """``sparc checkpoint scrub`` starts the sandbox child before it
    imports its command group, and lets an unused one go when it ends.
    """
    from sparc_nova.engine import sandbox

    calls = []
    monkeypatch.setattr(sandbox, 'prestart', lambda policy, preload,
                        prepare: calls.append(
                            (preload, prepare,
                             'sparc_nova.cmd.checkpoint' in sys.modules)))
    monkeypatch.setattr(sandbox, 'discard_spares',
                        lambda: calls.append('discarded'))
    monkeypatch.delitem(sys.modules, 'sparc_nova.cmd.checkpoint',
                        raising=False)
    missing = str(tmp_path / 'missing.save')
    assert sparc.main(['checkpoint', 'scrub', missing,
                       '--exclude-process', 'pid:1']) == sparc.EXIT_ERROR
    assert calls == [(('sparc_nova.engine.sandboxed_plan:plan_in_sandbox',),
                      sparc.SANDBOX_PREPARE, False), 'discarded']
    calls.clear()
    with pytest.raises(SystemExit):
        sparc.main(['checkpoint', 'scrub', '--help'])
    assert calls == ['discarded']
    calls.clear()
    sparc.main(['checkpoint', 'info', missing])
    assert calls == []


def test_a_configuration_error_is_reported(tmp_path, capsys):
    assert sparc.main(['--config-file', str(tmp_path / 'none.conf'),
                       'checkpoint', 'info', 'x']) == sparc.EXIT_ERROR
    assert 'configuration error' in capsys.readouterr().err
