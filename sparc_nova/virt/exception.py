"""Nova exceptions of sparc-nova: their messages become instance faults."""

from nova import exception as nova_exception


class SparcPolicyInvalid(nova_exception.Invalid):
    msg_fmt = ('Invalid privacy policy for instance %(instance_uuid)s: '
               '%(reason)s')


class SparcScrubFailed(nova_exception.NovaException):
    msg_fmt = ('Privacy scrub of the %(what)s of instance %(instance_uuid)s '
               'failed; nothing unscrubbed was kept: %(reason)s')


class SparcOperationRefused(nova_exception.Invalid):
    msg_fmt = ('%(operation)s of instance %(instance_uuid)s is refused by '
               'its privacy policy: %(reason)s')


class SparcUnscrubbedSaveDiscarded(nova_exception.NovaException):
    msg_fmt = ('The suspend of instance %(instance_uuid)s did not finish '
               'scrubbing its memory image before nova-compute stopped; '
               'the unscrubbed image was deleted and the guest\'s memory '
               'state is lost. Its disks are intact: reboot the server '
               '(openstack server reboot --hard) to start it again.')


class SparcSealKeyError(nova_exception.NovaException):
    msg_fmt = ('The sealing key of instance %(instance_uuid)s could not be '
               '%(action)s in the key manager: %(reason)s')


class SparcSealFailed(nova_exception.NovaException):
    # What happened comes first: Nova keeps 255 characters of a fault.
    msg_fmt = ('%(operation)s of the sealed memory image of instance '
               '%(instance_uuid)s failed, %(outcome)s: %(reason)s')


class SparcSealFallbackKill(nova_exception.NovaException):
    msg_fmt = ('Resumed without the excluded processes ([sparc] '
               'seal_fallback = kill): the sealing key could not be '
               'fetched: %(reason)s')
