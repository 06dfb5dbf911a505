"""Options of the Nova integration (SparcLibvirtDriver) and of the
policy merge."""

from oslo_config import cfg
from oslo_config import types

opts = [
    cfg.ListOpt('on_failure_allow_from',
                item_type=types.String(choices=('flavor', 'image',
                                                'instance')),
                default=['flavor'],
                help='Policy sources whose sparc:on_failure=allow is '
                     'honoured: with it, a checkpoint whose scrub failed '
                     'is kept unscrubbed (and marked so) instead of being '
                     'discarded. "flavor" is the operator (flavor extra '
                     'specs), "image" the image owner (image properties), '
                     '"instance" any member of the project (instance '
                     'metadata). An allow from any other source is refused '
                     'and the checkpoint fails closed. An empty list '
                     'refuses it from everyone.'),
    cfg.StrOpt('managed_save_dir', default='/var/lib/libvirt/qemu/save',
               help='Directory where libvirt keeps managed-save files '
                    '(<domain name>.save) of the libvirt connection Nova '
                    'uses. The privileged scrub refuses any path outside '
                    'it.'),
    cfg.BoolOpt('refuse_live_migration', default=False,
                help='Refuse every live migration of an instance that has '
                     'a privacy policy. When false (the default), it may '
                     'live migrate to a host that runs sparc-nova (trait '
                     'CUSTOM_SPARC_NOVA), and only over libvirt\'s native '
                     'TLS ([libvirt] live_migration_with_native_tls): its '
                     'memory, excluded processes included, crosses the '
                     'network.'),
    cfg.BoolOpt('refuse_cold_migration', default=False,
                help='Refuse every cold migration or resize to another '
                     'host of an instance that has a privacy policy. When '
                     'false (the default), it may move to a host that runs '
                     'sparc-nova (trait CUSTOM_SPARC_NOVA). A resize to a '
                     'flavor that drops the operator\'s sparc: extra specs, '
                     'and a resize across cells (it goes through an '
                     'unscrubbed image in Glance), are always refused for '
                     'such instances.'),
    cfg.BoolOpt('send_notifications', default=True,
                help='Send sparc.scrub.start, sparc.scrub.end and '
                     'sparc.scrub.error notifications on Nova\'s '
                     'notification transport (drivers and topics from '
                     '[oslo_messaging_notifications]).'),
    cfg.BoolOpt('notify_clear_text_policy', default=False,
                help='Put the policy\'s process selectors and path globs '
                     'in clear text into sparc.scrub.* notifications. By '
                     'default notifications carry the policy digest and '
                     'how many selectors and globs it has: a path or a '
                     'process name can itself be a secret of the tenant, '
                     'and notifications go to every consumer of the '
                     'notification bus.'),
    cfg.StrOpt('seal_fallback', default='refuse',
               choices=(('refuse', 'the resume fails with a fault that '
                         'says why and the server stays SUSPENDED, its '
                         'managed save and sealed pages untouched'),
                        ('kill', 'the server resumes without the excluded '
                         'processes: they are killed on restore, as after '
                         'a scrub, and the sealed pages are deleted')),
               help='What the resume of a server suspended with '
                    'sparc:suspend=seal does when the key that opens its '
                    'sealed pages cannot be fetched from the key manager '
                    '(the secret was deleted, the project may not read it, '
                    'or the key manager is unreachable). The key manager '
                    'is the one Nova uses for encrypted volumes: the '
                    '[key_manager] and [barbican] sections of nova.conf '
                    '(castellan).'),
    cfg.IntOpt('progress_log_interval', default=10, min=1,
               help='Seconds between two progress log lines of a running '
                    'scrub.'),
]
