"""The ``sparc`` command: ``sparc checkpoint ...``, ``sparc image ...``,
``sparc policy ...``, ``sparc kernel ...``.

Each command group lives in its own module with a ``register(subparsers)``
function; this module only assembles them and maps errors to exit codes:
0 success, 1 a check found what it looked for (e.g. ``verify`` found a
marker), 2 an error (message on stderr).

``--debug`` and ``--log-file`` turn on oslo.log; without them nothing is
logged beyond Python's default (warnings on stderr). Logs never hold page
or file contents, markers or excluded paths (see doc/hardening.md).
"""

import argparse
import importlib
import os
import sys

from oslo_config import cfg
from oslo_log import log as logging

from sparc_nova import conf as sparc_conf
from sparc_nova import exception
from sparc_nova.printable import printable

#: Command group modules under sparc_nova.cmd, in help order. A group
#: whose module is missing from an installation is simply not offered.
GROUPS = ('checkpoint', 'image', 'policy', 'kernel')

_PLAN = 'sparc_nova.engine.sandboxed_plan:plan_in_sandbox'
_LISTING = 'sparc_nova.engine.listings:listing_in_sandbox'
#: The function each command runs in the parsing sandbox, by (group,
#: command): the child is started before the command's modules are
#: imported (the names are those of the engine's ``PLAN_ENTRY`` and
#: ``LISTING_ENTRY``, whose modules this one does not import).
SANDBOXED_COMMANDS = {
    ('checkpoint', 'scrub'): _PLAN,
    ('checkpoint', 'seal'): _PLAN,
    ('checkpoint', 'save'): _PLAN,
    ('checkpoint', 'ps'): _LISTING,
    ('checkpoint', 'deps'): _LISTING,
}
#: The sandbox child's preparation (``sandbox_calls.PREPARE_ENTRY``).
SANDBOX_PREPARE = 'sparc_nova.engine.sandbox_calls:prepare_sandbox'

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_ERROR = 2


def _global_options() -> argparse.ArgumentParser:
    """The options every command takes, before its group."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--config-file', action='append', default=[],
                        metavar='PATH',
                        help='oslo.config file with a [sparc] section '
                             '(repeatable; default: none).')
    parser.add_argument('--debug', action='store_true',
                        help='Log debug messages (oslo.log).')
    parser.add_argument('--log-file', metavar='PATH',
                        help='Write the log here (oslo.log; default: '
                             'stderr when --debug is given).')
    return parser


def build_parser(group: str | None = None) -> argparse.ArgumentParser:
    """The whole command line parser; with ``group``, only that command
    group's module is imported and registered (the others are names
    without options: a command starts faster when it does not import
    every engine).
    """
    parser = argparse.ArgumentParser(
        prog='sparc', parents=[_global_options()],
        description='Privacy-aware checkpointing: inspect, scrub and '
                    'verify VM checkpoints.')
    groups = parser.add_subparsers(dest='group', metavar='GROUP')
    groups.required = True
    for name in GROUPS:
        if group is not None and name != group:
            groups.add_parser(name)
            continue
        try:
            module = importlib.import_module('sparc_nova.cmd.' + name)
        except ImportError as e:
            if e.name != 'sparc_nova.cmd.' + name:
                raise
            continue
        module.register(groups)
    return parser


def requested_group(argv: list[str]) -> str | None:
    """The command group ``argv`` names (its first word that is not a
    global option or an option's value), or None when it names none of
    :data:`GROUPS` (``sparc --help``, a typo: the whole parser answers).
    """
    words = _command_words(argv)
    return words[0] if words and words[0] in GROUPS else None


def _command_words(argv: list[str]) -> list[str]:
    """The words of ``argv`` after its global options."""
    words = iter(argv)
    for word in words:
        if word in ('--config-file', '--log-file'):
            next(words, None)
        elif not word.startswith('-'):
            return [word] + list(words)
    return []


def sandboxed_entry(argv: list[str]) -> str | None:
    """The function the command of ``argv`` runs in the parsing sandbox
    (:data:`SANDBOXED_COMMANDS`), None for the other commands.
    """
    words = _command_words(argv)
    return SANDBOXED_COMMANDS.get(tuple(words[:2]))


def _load_configuration(argv: list[str]):
    """Parse the global options of ``argv`` and load the configuration
    files they name into :data:`sparc_nova.conf.CONF`; the global
    options.
    """
    options, _ = _global_options().parse_known_args(
        argv[:len(argv) - len(_command_words(argv))])
    try:
        logging.register_options(sparc_conf.CONF)
    except cfg.ArgsAlreadyParsedError:
        pass        # registered by an earlier main() in this process
    sparc_conf.CONF([], project='sparc-nova',
                    default_config_files=options.config_file)
    return options


def _prestart_sandbox(entry: str) -> None:
    """Start the sandbox child of the command now, so that its start-up
    overlaps this process's imports and the opening of the checkpoint
    (:func:`sparc_nova.engine.sandbox.prestart`). A child that cannot be
    started here is started, or reported, when the command needs it.
    """
    from sparc_nova.engine import sandbox

    try:
        sandbox.prestart(sandbox.SandboxPolicy.from_conf(sparc_conf.CONF),
                         (entry,), SANDBOX_PREPARE)
    except (exception.SparcError, OSError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    entry = sandboxed_entry(argv)
    try:
        options = _load_configuration(argv)
        if entry is not None and '--help' not in argv and \
                '-h' not in argv:
            _prestart_sandbox(entry)
    except cfg.Error as e:
        print('sparc: configuration error: %s' % e, file=sys.stderr)
        return EXIT_ERROR
    try:
        return _run(build_parser(requested_group(argv)).parse_args(argv),
                    options)
    finally:
        if entry is not None:
            from sparc_nova.engine import sandbox

            sandbox.discard_spares()


def _run(args: argparse.Namespace, options: argparse.Namespace) -> int:
    if options.debug or options.log_file:
        sparc_conf.CONF.set_override('debug', options.debug)
        sparc_conf.CONF.set_override('log_file', options.log_file)
        sparc_conf.CONF.set_override('use_stderr', not options.log_file)
        logging.setup(sparc_conf.CONF, 'sparc-nova')
    try:
        return args.func(args) or EXIT_OK
    except exception.SparcError as e:
        # Messages can quote guest strings (names, paths): escaped.
        print('sparc: error: %s' % printable(e), file=sys.stderr)
        return EXIT_ERROR
    except cfg.Error as e:
        print('sparc: configuration error: %s' % e, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (``sparc checkpoint deps FILE | head``):
        # stop quietly, as other command line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
