"""ScrubOptions: how one disk scrub runs.

The caller builds the options (from its own oslo.config object with
:meth:`ScrubOptions.from_conf`, or field by field) and hands them to
:func:`~sparc_nova.engine.disk.scrub.scrub_image`; the engine reads no
global configuration.
"""

import dataclasses
from typing import Mapping

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import qemu_img

__all__ = ['ScrubOptions']


@dataclasses.dataclass
class ScrubOptions:
    """How to scrub; defaults match the ``[sparc] disk_*`` options.

    :param output_format: ``qcow2`` or ``raw``.
    :param luks_keys: passphrases by LUKS device (``/dev/sda2``, as the
        appliance names it) or by ``UUID=<luks uuid>`` (as crypttab names
        it).
    :param allow_unverified: skip, and report as unverified, what cannot
        be scrubbed (LUKS without a key, unknown volumes, unmountable
        filesystems, matches on filesystems without a backend) instead of
        failing.
    :param reveal_paths: report removed guest paths by name instead of
        by SHA-256 digest.
    :param verify_kept: ``sample`` or ``all`` kept files hashed.
    :param verify_sample_size: number of kept files in a sample.
    :param canary_windows: windows sampled per removed file.
    :param accel: appliance accelerator: auto, kvm or tcg.
    :param work_dir: where the working copy goes (default: dst's
        directory).
    :param memsize_mib: appliance memory (0: libguestfs default).
    :param appliance_cache_dir: where the appliance booting the host's
        kernel uncompressed is built and kept (:mod:`.fast_boot`); None
        boots libguestfs' own appliance.
    :param launch_timeout_s: seconds an appliance launch may take before
        it is killed (and, if it was not on TCG, tried once on TCG).
    :param source_format: format of the source as qemu-img names it
        (:data:`.source.FORMATS`); None: found with the format inspector,
        never by a qemu probe.
    :param allow_backing_chain: read and flatten the source's backing
        files (each in the format its overlay records); off, an image
        with a backing file is refused.
    :param qemu_img_limits: CPU and address-space limits of qemu-img.
    """
    output_format: str = 'qcow2'
    luks_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)
    allow_unverified: bool = False
    reveal_paths: bool = False
    verify_kept: str = 'sample'
    verify_sample_size: int = 200
    canary_windows: int = 4
    accel: str = 'auto'
    work_dir: str | None = None
    memsize_mib: int = 0
    launch_timeout_s: float = appliance.LAUNCH_TIMEOUT
    appliance_cache_dir: str | None = None
    source_format: str | None = None
    allow_backing_chain: bool = False
    qemu_img_limits: qemu_img.Limits = dataclasses.field(
        default_factory=qemu_img.Limits)

    @classmethod
    def from_conf(cls, conf, **overrides) -> 'ScrubOptions':
        """Options from the ``[sparc] disk_*`` options of ``conf`` (an
        oslo.config ``ConfigOpts`` on which :mod:`sparc_nova.conf`
        registered them), then ``overrides`` (those that are not None).
        """
        c = conf.sparc
        values = dict(output_format=c.disk_output_format,
                      allow_unverified=c.disk_allow_unverified,
                      reveal_paths=c.disk_report_paths,
                      verify_kept=c.disk_verify_kept,
                      verify_sample_size=c.disk_verify_sample_size,
                      canary_windows=c.disk_canary_windows,
                      accel=c.disk_accel, work_dir=c.disk_work_dir or None,
                      memsize_mib=c.disk_appliance_memory_mib,
                      launch_timeout_s=c.disk_appliance_launch_timeout_s,
                      appliance_cache_dir=(c.disk_appliance_cache_dir
                                           or None),
                      qemu_img_limits=qemu_img.Limits(
                          inspect_cpu_s=c.disk_qemu_img_inspect_cpu_s,
                          inspect_address_space_mib=(
                              c.disk_qemu_img_inspect_address_space_mib),
                          convert_cpu_s=c.disk_qemu_img_convert_cpu_s,
                          convert_address_space_mib=(
                              c.disk_qemu_img_convert_address_space_mib)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
