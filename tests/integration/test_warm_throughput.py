"""UpdateStreamWarmThroughput and the WarmThroughput / StreamId members of DescribeStreamSummary.

Warm throughput is for on-demand streams of an account with the minimum throughput billing
commitment on; the stream is UPDATING while it scales, and the target is current after. The
installed SDK models predate the operation, so these tests send signed JSON (RawApi).
"""

import re

import pytest

import helpers
from helpers import assert_type_errors, assert_validation, constraint

STREAM_ID = re.compile(r"[a-z0-9]{20}-[a-z0-9]{3}")


def create_on_demand(api, name):
    api.ok("CreateStream", {"StreamName": name, "StreamModeDetails": {"StreamMode": "ON_DEMAND"}})


def summary(api, name):
    return api.ok("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]


def wait_active(api, name):
    kinesis = helpers.make_client(api.endpoint, retry_rate_limited=True)
    helpers.wait_for_status(kinesis, name)


@pytest.fixture
def committed(kinesd_factory):
    """A server of our own (the commitment is account-wide) with the commitment enabled."""
    server = kinesd_factory()
    api = helpers.RawApi(server.endpoint, retry_rate_limited=True)
    api.ok("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "ENABLED"}})
    return server, api


# ---- serialization and validation (shared server)


def test_warm_throughput_members_are_type_checked(api):
    assert_type_errors(api, "UpdateStreamWarmThroughput", "WarmThroughputMiBps", "Integer")
    assert_type_errors(api, "UpdateStreamWarmThroughput", "StreamName", "String")
    assert_type_errors(api, "UpdateStreamWarmThroughput", "StreamARN", "String")
    assert_type_errors(api, "UpdateStreamWarmThroughput", "StreamId", "String")


def test_missing_members_are_validation_errors(api):
    assert_validation(api.call("UpdateStreamWarmThroughput", {}),
                      constraint(None, "streamName", "Member must not be null"),
                      constraint(None, "warmThroughputMiBps", "Member must not be null"))


def test_a_negative_warm_throughput_is_a_validation_error(api):
    resp = api.call("UpdateStreamWarmThroughput", {"StreamName": "x", "WarmThroughputMiBps": -1})
    assert_validation(resp, constraint(-1, "warmThroughputMiBps", "Member must have value greater than or equal to 0"))


def test_an_unknown_stream_is_not_found(api):
    name = helpers.unique_name("nothing")
    api.error("UpdateStreamWarmThroughput", {"StreamName": name, "WarmThroughputMiBps": 10},
              "ResourceNotFoundException", helpers.not_found_message(name))


def test_a_provisioned_stream_has_no_warm_throughput(api, make_stream):
    name = make_stream(1)
    resp = api.error("UpdateStreamWarmThroughput", {"StreamName": name, "WarmThroughputMiBps": 10},
                     "InvalidArgumentException")
    assert name in resp.error_message and "ON_DEMAND" in resp.error_message
    assert "WarmThroughput" not in summary(api, name)


def test_describe_stream_summary_reports_a_stable_stream_id(api, make_stream):
    name = make_stream(1)
    first = summary(api, name)["StreamId"]
    assert STREAM_ID.fullmatch(first), first
    assert summary(api, name)["StreamId"] == first
    other = summary(api, make_stream(1))["StreamId"]
    assert STREAM_ID.fullmatch(other) and other != first


# ---- behaviour (own server)


@pytest.mark.own_server
def test_without_the_commitment_an_on_demand_stream_is_refused_and_shows_no_warm_throughput(kinesd_factory):
    server = kinesd_factory()
    api = helpers.RawApi(server.endpoint, retry_rate_limited=True)
    create_on_demand(api, "od")
    wait_active(api, "od")
    resp = api.error("UpdateStreamWarmThroughput", {"StreamName": "od", "WarmThroughputMiBps": 10},
                     "InvalidArgumentException")
    assert "commitment" in resp.error_message
    assert "WarmThroughput" not in summary(api, "od")


@pytest.mark.own_server
def test_an_update_scales_to_the_target_through_updating(committed):
    server, api = committed
    create_on_demand(api, "od")
    wait_active(api, "od")
    # a stream never given a target reports its present write capacity: 4 shards, 1 MiB/s each
    assert summary(api, "od")["WarmThroughput"] == {"TargetMiBps": 4, "CurrentMiBps": 4}
    out = api.ok("UpdateStreamWarmThroughput", {"StreamARN": helpers.stream_arn("od"), "WarmThroughputMiBps": 200})
    assert out == {"StreamARN": helpers.stream_arn("od"), "StreamName": "od",
                   "WarmThroughput": {"TargetMiBps": 200, "CurrentMiBps": 4}}
    during = summary(api, "od")
    if during["StreamStatus"] == "UPDATING":  # lasts --update-stream-ms (500 ms)
        assert during["WarmThroughput"] == {"TargetMiBps": 200, "CurrentMiBps": 4}
        api.error("UpdateStreamWarmThroughput", {"StreamName": "od", "WarmThroughputMiBps": 300},
                  "ResourceInUseException",
                  f"Stream od under account {helpers.ACCOUNT} not ACTIVE, instead in state UPDATING")
    wait_active(api, "od")
    assert summary(api, "od")["WarmThroughput"] == {"TargetMiBps": 200, "CurrentMiBps": 200}
    # lowering it releases capacity the same way
    out = api.ok("UpdateStreamWarmThroughput", {"StreamName": "od", "WarmThroughputMiBps": 0})
    assert out["WarmThroughput"] == {"TargetMiBps": 0, "CurrentMiBps": 200}
    wait_active(api, "od")
    assert summary(api, "od")["WarmThroughput"] == {"TargetMiBps": 0, "CurrentMiBps": 0}


@pytest.mark.own_server
def test_more_than_ten_gibps_is_over_the_limit(committed):
    server, api = committed
    create_on_demand(api, "od")
    wait_active(api, "od")
    resp = api.error("UpdateStreamWarmThroughput", {"StreamName": "od", "WarmThroughputMiBps": 10241},
                     "LimitExceededException")
    assert "10240" in resp.error_message
    api.ok("UpdateStreamWarmThroughput", {"StreamName": "od", "WarmThroughputMiBps": 10240})


@pytest.mark.own_server
def test_warm_throughput_and_stream_id_survive_a_restart(kinesd_factory):
    server = kinesd_factory({"--update-stream-ms": "0"})
    api = helpers.RawApi(server.endpoint, retry_rate_limited=True)
    api.ok("UpdateAccountSettings", {"MinimumThroughputBillingCommitment": {"Status": "ENABLED"}})
    create_on_demand(api, "od")
    wait_active(api, "od")
    api.ok("UpdateStreamWarmThroughput", {"StreamName": "od", "WarmThroughputMiBps": 64})
    before = summary(api, "od")
    assert before["WarmThroughput"] == {"TargetMiBps": 64, "CurrentMiBps": 64}

    server.restart()
    api = helpers.RawApi(server.endpoint, retry_rate_limited=True)
    after = summary(api, "od")
    assert after["WarmThroughput"] == before["WarmThroughput"]
    assert after["StreamId"] == before["StreamId"]


@pytest.mark.own_server
def test_create_stream_sets_the_warm_throughput_of_an_on_demand_stream(committed):
    server, api = committed
    api.ok("CreateStream", {"StreamName": "warm", "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
                            "WarmThroughputMiBps": 100})
    wait_active(api, "warm")
    assert summary(api, "warm")["WarmThroughput"] == {"TargetMiBps": 100, "CurrentMiBps": 100}
    api.error("CreateStream", {"StreamName": "too-warm", "StreamModeDetails": {"StreamMode": "ON_DEMAND"},
                               "WarmThroughputMiBps": 10241}, "LimitExceededException")
    api.error("DescribeStreamSummary", {"StreamName": "too-warm"}, "ResourceNotFoundException")
