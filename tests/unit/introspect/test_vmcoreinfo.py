import pytest

from sparc_nova.introspect import physical
from sparc_nova.introspect import vmcoreinfo

TEXT = (b'OSRELEASE=6.12.7-amd64\nBUILD-ID=abcdef0123\nPAGESIZE=4096\n'
        b'SYMBOL(swapper_pg_dir)=ffffffff9a010000\n'
        b'OFFSET(page.flags)=0\nSIZE(page)=64\nLENGTH(zone.free_area)=11\n'
        b'NUMBER(phys_base)=-564133888\n'
        b'NUMBER(VMALLOC_START)=0xffffd0ebc0000000\n'
        b'NUMBER(pgtable_l5_enabled)=0\n'
        b'SYMBOL(kallsyms_names)=ffffffff99000000\n'
        b'KERNELOFFSET=18600000\n')


def test_parse():
    v = vmcoreinfo.parse(TEXT, 0x1000)
    assert v.osrelease == '6.12.7-amd64' and v.build_id == 'abcdef0123'
    assert v.kerneloffset == 0x18600000
    assert v.phys_base == -564133888
    assert v.numbers['VMALLOC_START'] == 0xffffd0ebc0000000
    assert v.sizes['page'] == 64 and v.lengths['zone.free_area'] == 11
    assert not v.has_kallsyms        # the other tables are missing
    assert not v.pgtable_l5_enabled


@pytest.mark.parametrize('drop', [b'OSRELEASE=', b'KERNELOFFSET=',
                                  b'BUILD-ID=', b'SYMBOL(swapper_pg_dir)'])
def test_missing_keys(drop):
    text = b'\n'.join(line for line in TEXT.split(b'\n')
                      if not line.startswith(drop))
    with pytest.raises(vmcoreinfo.VmcoreinfoError):
        vmcoreinfo.parse(text)


def test_malformed():
    with pytest.raises(vmcoreinfo.VmcoreinfoError, match='malformed'):
        vmcoreinfo.parse(TEXT + b'garbage line\n')
    with pytest.raises(vmcoreinfo.VmcoreinfoError, match='not hex'):
        vmcoreinfo.parse(TEXT.replace(b'abcdef0123', b'xyz'))
    with pytest.raises(vmcoreinfo.VmcoreinfoError, match='page size'):
        vmcoreinfo.parse(TEXT.replace(b'4096', b'65536'))


def test_values_beyond_64_bits():
    # drgn takes addresses as 64-bit integers: a larger one raised
    # OverflowError from deep inside it.
    with pytest.raises(vmcoreinfo.VmcoreinfoError, match='64 bits'):
        vmcoreinfo.parse(TEXT.replace(b'=ffffffff99000000',
                                      b'=10000000000000000'))
    with pytest.raises(vmcoreinfo.VmcoreinfoError, match='64 bits'):
        vmcoreinfo.parse(TEXT.replace(b'KERNELOFFSET=18600000',
                                      b'KERNELOFFSET=1' + b'0' * 16))
    # A number out of range is not a number (as a malformed one is).
    v = vmcoreinfo.parse(TEXT.replace(b'-564133888', b'-' + b'9' * 25))
    assert 'phys_base' not in v.numbers and v.phys_base == 0
    edge = vmcoreinfo.parse(TEXT.replace(b'=ffffffff99000000',
                                         b'=ffffffffffffffff'))
    assert edge.symbols['kallsyms_names'] == (1 << 64) - 1


def test_candidates_skip_format_string_and_duplicates():
    rodata = b'OSRELEASE=%s\n\0BUILD-ID=%20phN\n\0KERNELOFFSET=%lx\n\0'
    data = bytearray(64 * 1024)
    data[100:100 + len(rodata)] = rodata
    data[8192:8192 + len(TEXT)] = TEXT
    data[20000:20000 + len(TEXT)] = TEXT
    found = vmcoreinfo.candidates(physical.BytesMemory(bytes(data)))
    assert found == [(8192, TEXT)]


def test_candidates_by_the_vcpus_phys_base():
    """Forgeries ahead of the kernel's text, as many as the search reads:
    the plain search never reaches the kernel's text; the search for the
    phys_base the vCPUs give finds it first, wherever its line falls.
    """
    n = vmcoreinfo.MAX_CANDIDATES
    data = bytearray(4096 * (n + 2))
    for i in range(n):
        forged = TEXT.replace(b'=-564133888', b'=%d' % (i * 4096))
        data[i * 4096:i * 4096 + len(forged)] = forged
    real_at = (n + 1) * 4096 - 200     # the text crosses a page
    data[real_at:real_at + len(TEXT)] = TEXT
    mem = physical.BytesMemory(bytes(data))
    assert real_at not in [a for a, _ in vmcoreinfo.candidates(mem)]
    phys_base = -564133888 & ((1 << 64) - 1)
    assert list(vmcoreinfo.iter_candidates(mem, phys_base)) == [
        (real_at, TEXT)]
    assert vmcoreinfo.phys_base_line(phys_base) == \
        b'\nNUMBER(phys_base)=-564133888\n'
    # A value nobody wrote finds nothing.
    assert list(vmcoreinfo.iter_candidates(mem, 1 << 21)) == []
