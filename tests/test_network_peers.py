"""kafkaprod's NetworkClient against a real peer whose answers bend the protocol: librdkafka's mock cluster.

The mock refuses ApiVersions v3 with a body in no version's shape, and ends flexible Metadata answers with a
second, empty tag section; the client must still connect and read its metadata. Waits have generous limits only
so a broken client fails instead of hanging; nothing is timed.
"""
from __future__ import annotations

import time

from kafkaprod.network import ClientResponse, NetworkClient
from kafkaprod.protocol.messages import API_VERSIONS, METADATA
from mock_cluster import MockCluster

WAIT_S = 15.0


def _client() -> NetworkClient:
    return NetworkClient("kafkaprod-tests", request_timeout_ms=10_000, reconnect_backoff_ms=50,
                         reconnect_backoff_max_ms=1000, max_in_flight=5)


def _await_ready(client: NetworkClient, node_id: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while not client.ready(node_id, time.monotonic()):
        assert time.monotonic() < deadline, f"broker {node_id} not ready within {WAIT_S} s"
        client.poll(0.05)


def _await_response(client: NetworkClient) -> ClientResponse:
    deadline = time.monotonic() + WAIT_S
    while True:
        assert time.monotonic() < deadline, f"no response within {WAIT_S} s"
        responses = client.poll(0.1)
        if responses:
            [response] = responses
            return response


def test_network_client_negotiates_with_the_mock_and_reads_its_metadata(mock_cluster: MockCluster, mock_topic) -> None:
    topic = mock_topic(partitions=3)
    host, port = mock_cluster.bootstrap_servers.split(",")[0].rsplit(":", 1)
    client = _client()
    try:
        client.set_node(1, host, int(port))
        _await_ready(client, 1)
        assert client.api_version(1, API_VERSIONS) == 2  # learnt from the v0 answer after v3 was refused
        assert client.api_version(1, METADATA) == METADATA.max_version  # flexible: the mock adds a tag byte

        client.send(1, METADATA, {"topics": [{"name": topic}]})
        response = _await_response(client)

        assert (response.disconnected, response.error) == (False, None)
        [answer] = response.body["topics"]
        assert {p["partition_index"]: p["leader_id"] for p in answer["partitions"]} == {0: 1, 1: 2, 2: 3}
        assert client.is_connected(1)
    finally:
        client.close()
