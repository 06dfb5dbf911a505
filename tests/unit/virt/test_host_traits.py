"""Which hosts run sparc-nova, from placement."""

from unittest import mock

from nova import exception as nova_exception
from nova import objects
import pytest

from sparc_nova.virt import host_traits


@pytest.fixture
def placement():
    objects.register_all()
    traits = {}

    def get_traits(context, rp_uuid):
        if rp_uuid not in traits:
            raise nova_exception.ResourceProviderTraitRetrievalFailed(
                uuid=rp_uuid)
        return mock.Mock(traits=traits[rp_uuid])

    client = mock.Mock()
    client.get_provider_traits.side_effect = get_traits
    with mock.patch('nova.scheduler.client.report.report_client_singleton',
                    return_value=client):
        yield traits


def nodes(*uuids):
    return mock.patch('nova.objects.ComputeNodeList.get_all_by_host',
                      return_value=[mock.Mock(uuid=u) for u in uuids])


def test_every_node_has_the_trait(placement):
    placement.update(a={'CUSTOM_SPARC_NOVA', 'HW_CPU_X86_AVX'},
                     b={'CUSTOM_SPARC_NOVA'})
    with nodes('a', 'b'):
        assert host_traits.runs_sparc_nova('ctx', 'h') is True


def test_a_node_without_it(placement):
    placement.update(a={'CUSTOM_SPARC_NOVA'}, b={'HW_CPU_X86_AVX'})
    with nodes('a', 'b'):
        assert host_traits.runs_sparc_nova('ctx', 'h') is False


def test_no_node_or_no_answer_is_no(placement):
    with nodes():
        assert host_traits.runs_sparc_nova('ctx', 'h') is False
    with nodes('unknown'):
        assert host_traits.runs_sparc_nova('ctx', 'h') is False
    with mock.patch('nova.objects.ComputeNodeList.get_all_by_host',
                    side_effect=nova_exception.ComputeHostNotFound(
                        host='h')):
        assert host_traits.runs_sparc_nova('ctx', 'h') is False
