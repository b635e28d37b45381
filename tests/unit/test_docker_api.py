"""Engine API client pieces that need no engine: stream framing, addresses, errors."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.fieldservice.deploy.plugins.module_utils import docker_api as d


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def test_demux_splits_stdout_and_stderr():
    data = frame(1, b"out1\n") + frame(2, b"err1\n") + frame(1, b"out2\n") + frame(0, b"in\n")
    assert d.demux_stream(data) == (b"out1\nout2\nin\n", b"err1\n")
    assert d._interleave(data) == b"out1\nerr1\nout2\nin\n"


def test_demux_keeps_a_truncated_last_frame():
    data = frame(1, b"hello") + struct.pack(">BxxxL", 2, 10) + b"abc"
    assert d.demux_stream(data) == (b"hello", b"abc")


def test_demux_rejects_non_multiplexed_data():
    with pytest.raises(ValueError, match="not a multiplexed"):
        d.demux_stream(b"plain text that is long enough")
    assert d._interleave(b"plain text") == b"plain text"


@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=20))
def test_demux_round_trip(frames):
    data = b"".join(frame(s, p) for s, p in frames)
    out, err = d.demux_stream(data)
    assert out == b"".join(p for s, p in frames if s == 1)
    assert err == b"".join(p for s, p in frames if s == 2)


def test_parse_docker_host():
    assert d.parse_docker_host("unix:///var/run/docker.sock") == ("unix", "/var/run/docker.sock")
    assert d.parse_docker_host("") == ("unix", "/var/run/docker.sock")
    assert d.parse_docker_host("/run/docker.sock") == ("unix", "/run/docker.sock")
    assert d.parse_docker_host("tcp://127.0.0.1:2375") == ("tcp", "127.0.0.1:2375")
    for bad in ("ssh://host", "unix://relative.sock", "tcp://"):
        with pytest.raises(ValueError, match="docker_host"):
            d.parse_docker_host(bad)


def test_since_param():
    assert d._since_param(12) == "12"
    assert d._since_param(12.5) == "12.500000000"
    assert d._since_param("3.000000001") == "3.000000001"


def test_missing_socket_is_unavailable(tmp_path):
    client = d.DockerClient(f"unix://{tmp_path}/no.sock", timeout=2)
    with pytest.raises(d.DockerUnavailable, match="cannot connect"):
        client.ping()


def test_api_error_message():
    exc = d.DockerAPIError(409, "Container x is not running", "POST", "/containers/x/exec")
    assert exc.status == 409 and exc.message == "Container x is not running"
    assert str(exc) == "Docker API error 409 (POST /containers/x/exec): Container x is not running"
    assert d.DockerClient._error_message(b'{"message": "boom"}', "Conflict") == "boom"
    assert d.DockerClient._error_message(b"", "Conflict") == "Conflict"


def test_exec_run_rejects_bad_cmd():
    with pytest.raises(ValueError):
        d.DockerClient().exec_run("x", [])
