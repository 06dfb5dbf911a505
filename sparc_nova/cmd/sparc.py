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

EXIT_OK = 0
EXIT_FOUND = 1
EXIT_ERROR = 2


def build_parser(group: str | None = None) -> argparse.ArgumentParser:
    """The whole command line parser; with ``group``, only that command
    group's module is imported and registered (the others are names
    without options: a command starts faster when it does not import
    every engine).
    """
    parser = argparse.ArgumentParser(
        prog='sparc',
        description='Privacy-aware checkpointing: inspect, scrub and '
                    'verify VM checkpoints.')
    parser.add_argument('--config-file', action='append', default=[],
                        metavar='PATH',
                        help='oslo.config file with a [sparc] section '
                             '(repeatable; default: none).')
    parser.add_argument('--debug', action='store_true',
                        help='Log debug messages (oslo.log).')
    parser.add_argument('--log-file', metavar='PATH',
                        help='Write the log here (oslo.log; default: '
                             'stderr when --debug is given).')
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
    words = iter(argv)
    for word in words:
        if word in ('--config-file', '--log-file'):
            next(words, None)
        elif not word.startswith('-'):
            return word if word in GROUPS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(requested_group(argv))
    args = parser.parse_args(argv)
    try:
        logging.register_options(sparc_conf.CONF)
    except cfg.ArgsAlreadyParsedError:
        pass        # registered by an earlier main() in this process
    sparc_conf.CONF([], project='sparc-nova',
                    default_config_files=args.config_file)
    if args.debug or args.log_file:
        sparc_conf.CONF.set_override('debug', args.debug)
        sparc_conf.CONF.set_override('log_file', args.log_file)
        sparc_conf.CONF.set_override('use_stderr', not args.log_file)
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
