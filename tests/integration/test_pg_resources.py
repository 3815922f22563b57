"""Two front-ends over one PostgreSQL see each other's enhanced monitoring, warm throughput and
consumer tags. Skipped without PostgreSQL (make test runs it under tools/with-postgres.sh)."""

import time

import pytest

import helpers
from test_pg_frontends import client, start, store, wait_active  # noqa: F401 - fixtures

pytestmark = [pytest.mark.own_server]


def eventually(fn, timeout=20):
    """fn() until it returns a true value (another front-end reloads rows within a tick)."""
    deadline = time.time() + timeout
    while True:
        got = fn()
        if got or time.time() > deadline:
            return got
        time.sleep(0.05)


def test_metrics_enabled_on_one_front_end_show_on_the_other(start):
    a, b = start(), start()
    ka, kb = client(a), client(b)
    ka.create_stream(StreamName="m", ShardCount=1)
    wait_active(ka, "m")
    ka.enable_enhanced_monitoring(StreamName="m", ShardLevelMetrics=["IncomingBytes", "IteratorAgeMilliseconds"])

    def seen():
        got = kb.describe_stream_summary(StreamName="m")["StreamDescriptionSummary"]["EnhancedMonitoring"]
        return got == [{"ShardLevelMetrics": ["IncomingBytes", "IteratorAgeMilliseconds"]}]

    assert eventually(seen)
    out = kb.disable_enhanced_monitoring(StreamName="m", ShardLevelMetrics=["IncomingBytes"])
    assert out["CurrentShardLevelMetrics"] == ["IncomingBytes", "IteratorAgeMilliseconds"]
    assert out["DesiredShardLevelMetrics"] == ["IteratorAgeMilliseconds"]


def test_consumer_tags_set_on_one_front_end_are_listed_by_the_other(start):
    a, b = start(), start()
    ka = client(a)
    ka.create_stream(StreamName="c", ShardCount=1)
    wait_active(ka, "c")
    api_a, api_b = helpers.RawApi(a.endpoint), helpers.RawApi(b.endpoint)
    arn = api_a.ok("RegisterStreamConsumer", {"StreamARN": helpers.stream_arn("c"), "ConsumerName": "x",
                                              "Tags": {"k": "1"}})["Consumer"]["ConsumerARN"]
    assert eventually(lambda: api_b.call("ListTagsForResource", {"ResourceARN": arn}).status == 200)
    api_b.ok("TagResource", {"ResourceARN": arn, "Tags": {"j": "2"}})
    assert api_a.ok("ListTagsForResource", {"ResourceARN": arn})["Tags"] == [
        {"Key": "j", "Value": "2"}, {"Key": "k", "Value": "1"}]
