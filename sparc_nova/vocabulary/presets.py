"""Named rule presets: the places operators expect a privacy scrub to
cover.

Each preset is a list of guest path globs (see :mod:`.rules` for the
syntax); a leading ``!`` keeps what the preset would otherwise remove.
Presets name files, not behaviours: a file that lives somewhere else is
only removed by a rule that names it. doc/disk.md documents every preset.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    globs: tuple[str, ...]


_HOME = ('/root', '/home/*')


def _in_homes(*relative: str) -> tuple[str, ...]:
    """The globs ``<home>/<relative>`` for root's and every user's home."""
    return tuple('%s/%s' % (home, rel) for rel in relative for home in _HOME)


PRESETS = {p.name: p for p in (
    Preset('shell-history',
           'Command histories of shells, REPLs and database clients, and '
           'editor/pager state that records searches and registers.',
           ('**/.bash_history', '**/.zsh_history', '**/.zhistory',
            '**/.sh_history', '**/.history', '**/.ash_history',
            '**/.local/share/fish/fish_history', '**/.python_history',
            '**/.node_repl_history', '**/.mysql_history',
            '**/.psql_history', '**/.sqlite_history',
            '**/.rediscli_history', '**/.lesshst', '**/.viminfo')),
    Preset('ssh-private-keys',
           'SSH user private keys (id_* without .pub, *.pem) and SSH '
           'agent sockets. Public keys, authorized_keys and known_hosts '
           'are kept so that the restored server stays reachable.',
           _in_homes('.ssh/id_*', '.ssh/*.pem')
           + ('!**/.ssh/*.pub', '/tmp/ssh-*', '/run/user/*/ssh-*',
              '/run/user/*/keyring/ssh', '/run/user/*/gnupg/S.gpg-agent*')),
    Preset('ssh-host-keys',
           'SSH host private keys (/etc/ssh/ssh_host_*_key). The guest '
           'must regenerate them at boot (cloud-init does, as does '
           'Debian\'s ssh package on reconfiguration).',
           ('/etc/ssh/ssh_host_*_key',)),
    Preset('gnupg',
           'GnuPG secret keys and the random seed.',
           ('**/.gnupg/private-keys-v1.d', '**/.gnupg/secring.gpg',
            '**/.gnupg/random_seed')),
    Preset('cloud-init',
           'cloud-init user data, vendor data and the pickled instance '
           'object (they carry passwords, keys and scripts), its seed '
           'directory, and its logs (which echo user data).',
           ('/var/lib/cloud/instances/*/user-data.txt*',
            '/var/lib/cloud/instances/*/vendor-data*.txt*',
            '/var/lib/cloud/instances/*/obj.pkl',
            '/var/lib/cloud/seed', '/var/log/cloud-init.log',
            '/var/log/cloud-init-output.log')),
    Preset('instance-credentials',
           'Cloud and service credentials kept in home directories and '
           '/etc/openstack: OpenStack clouds.yaml/secure.yaml, AWS, '
           'Azure, Google Cloud, Kubernetes, Docker registries, netrc, '
           'git credential store, PostgreSQL and MySQL client passwords.',
           _in_homes('.config/openstack/clouds.yaml',
                     '.config/openstack/secure.yaml', '.aws/credentials',
                     '.aws/config', '.azure', '.config/gcloud',
                     '.kube/config', '.docker/config.json', '.netrc',
                     '.git-credentials', '.pgpass', '.my.cnf')
           + ('/etc/openstack/clouds.yaml', '/etc/openstack/secure.yaml')),
    Preset('tmp',
           'Everything below /tmp and /var/tmp (the directories stay).',
           ('/tmp/**', '/var/tmp/**')),
    Preset('crash-dumps',
           'Process core dumps and kernel crash dumps.',
           ('/var/crash/**', '/var/lib/systemd/coredump/**',
            '/var/lib/apport/coredump/**', '/var/lib/kdump/**')),
    Preset('password-managers',
           'Stores of common password managers: pass, GNOME keyring, '
           'KWallet, KeePass/KeePassXC databases and settings, Bitwarden, '
           '1Password.',
           _in_homes('.password-store', '.local/share/keyrings',
                     '.local/share/kwalletd', '.config/keepassxc',
                     '.config/Bitwarden', '.config/1Password',
                     '.1password')
           + ('**/*.kdbx', '**/*.kdb')),
    Preset('browser-profiles',
           'Profiles of Firefox, Chromium, Google Chrome, Brave and '
           'Microsoft Edge (cookies, saved passwords, history, caches).',
           _in_homes('.mozilla/firefox', 'snap/firefox/common/.mozilla',
                     '.config/chromium', '.config/google-chrome',
                     '.config/BraveSoftware', '.config/microsoft-edge',
                     '.cache/mozilla', '.cache/chromium',
                     '.cache/google-chrome')),
)}


def get(name: str) -> Preset:
    """The preset called ``name``; KeyError names the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError('unknown preset %r (known: %s)'
                       % (name, ', '.join(sorted(PRESETS)))) from None
