"""Enhanced fan-out consumers: RegisterStreamConsumer, DescribeStreamConsumer,
ListStreamConsumers, DeregisterStreamConsumer, and what DeleteStream and DescribeStreamSummary
make of them."""

import json
import re
import subprocess
import time

import pytest

import helpers
from helpers import raises_aws

ACCOUNT = helpers.ACCOUNT
REGION = helpers.REGION
ARN_RE = re.compile(rf"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/([^/]+)/consumer/([^:]+):(\d+)")


def wait_consumer(kinesis, arn, wanted="ACTIVE", timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = kinesis.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"]
        if st == wanted:
            return
        time.sleep(0.02)
    raise AssertionError(f"consumer {arn} not {wanted} after {timeout}s")


# ---- RegisterStreamConsumer ----------------------------------------------------------------------


def register_paced(kinesis, stream_arn, name, timeout=10.0):
    """RegisterStreamConsumer, waiting while 5 consumers are CREATING (AWS's cap; registration
    takes --register-consumer-ms, 500 ms by default)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return kinesis.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)
        except kinesis.exceptions.LimitExceededException as e:
            if "in CREATING status" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_register_answers_creating_with_an_arn_that_ends_in_the_creation_second(kinesis, make_stream):
    name = make_stream()
    before = time.time()
    c = kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="app-1")["Consumer"]
    assert c["ConsumerName"] == "app-1"
    assert c["ConsumerStatus"] == "CREATING"
    m = ARN_RE.fullmatch(c["ConsumerARN"])
    assert m and m.group(1) == name and m.group(2) == "app-1"
    assert int(m.group(3)) == int(c["ConsumerCreationTimestamp"].timestamp())
    assert abs(c["ConsumerCreationTimestamp"].timestamp() - before) < 60
    wait_consumer(kinesis, c["ConsumerARN"])


def test_consumer_is_creating_then_active_after_register_consumer_ms(kinesd_factory):
    srv = kinesd_factory(flags={"--register-consumer-ms": "400"})
    k = helpers.make_client(srv.endpoint)
    k.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(k, "s")
    arn = k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName="c")["Consumer"]["ConsumerARN"]
    assert k.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"] == "CREATING"
    wait_consumer(k, arn)
    k.deregister_stream_consumer(ConsumerARN=arn)
    assert k.describe_stream_consumer(ConsumerARN=arn)["ConsumerDescription"]["ConsumerStatus"] == "DELETING"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            k.describe_stream_consumer(ConsumerARN=arn)
        except k.exceptions.ResourceNotFoundException:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("consumer still there")


def test_register_the_same_name_twice_is_resource_in_use(kinesis, make_stream):
    name = make_stream()
    kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="dup")
    with raises_aws("ResourceInUseException"):
        kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="dup")


def test_register_on_an_unknown_stream_is_not_found(kinesis):
    with raises_aws("ResourceNotFoundException", helpers.not_found_message("nope-xyz")):
        kinesis.register_stream_consumer(StreamARN=helpers.stream_arn("nope-xyz"), ConsumerName="c")


def test_register_validates_the_consumer_name(kinesis_unchecked, make_stream):
    name = make_stream()
    with raises_aws("ValidationException", helpers.validation_message(
            helpers.constraint("bad name", "consumerName",
                               "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"))):
        kinesis_unchecked.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="bad name")


def test_register_requires_the_stream_arn(kinesis_unchecked):
    with raises_aws("ValidationException", helpers.validation_message(
            helpers.constraint(None, "streamARN", "Member must not be null"))):
        kinesis_unchecked.register_stream_consumer(ConsumerName="c")


def test_twenty_consumers_per_stream_then_limit_exceeded(kinesis, make_stream):
    name = make_stream()
    arn = helpers.stream_arn(name)
    for i in range(20):
        register_paced(kinesis, arn, f"c{i}")
    with raises_aws("LimitExceededException"):
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c20")
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["ConsumerCount"] == 20


def test_five_creating_at_once_then_limit_exceeded(kinesd_factory):
    srv = kinesd_factory(flags={"--register-consumer-ms": "60000"})
    k = helpers.make_client(srv.endpoint)
    k.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(k, "s")
    for i in range(5):
        k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName=f"c{i}")
    with raises_aws("LimitExceededException"):
        k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName="c5")


def test_register_is_rate_limited_per_account(kinesd_factory):
    srv = kinesd_factory(flags={"--no-limits": False, "--rate-limit": "RegisterStreamConsumer=1"})
    k = helpers.make_client(srv.endpoint)
    k.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(k, "s")
    with raises_aws("LimitExceededException"):
        for i in range(10):
            k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName=f"c{i}")


def test_tags_given_at_registration_are_checked(api, make_stream):
    # boto3's model may lack Tags here: the request is sent as the newer SDKs send it
    name = make_stream()
    resp = api.call("RegisterStreamConsumer", {"StreamARN": helpers.stream_arn(name), "ConsumerName": "t",
                                               "Tags": {f"k{i}": "v" for i in range(51)}})
    assert resp.status == 400 and resp.error_type == "InvalidArgumentException", resp
    resp = api.call("RegisterStreamConsumer", {"StreamARN": helpers.stream_arn(name), "ConsumerName": "t",
                                               "Tags": {"bad\u0001": "v"}})
    assert resp.status == 400 and resp.error_type == "InvalidArgumentException", resp
    resp = api.call("RegisterStreamConsumer", {"StreamARN": helpers.stream_arn(name), "ConsumerName": "t",
                                               "Tags": {"team": "data"}})
    assert resp.status == 200 and resp.json["Consumer"]["ConsumerStatus"] == "CREATING", resp


# ---- DescribeStreamConsumer ----------------------------------------------------------------------


def test_describe_by_arn_by_stream_and_name_and_by_all_three(kinesis, make_stream):
    name = make_stream()
    sarn = helpers.stream_arn(name)
    c = kinesis.register_stream_consumer(StreamARN=sarn, ConsumerName="d")["Consumer"]
    wait_consumer(kinesis, c["ConsumerARN"])
    a = kinesis.describe_stream_consumer(ConsumerARN=c["ConsumerARN"])["ConsumerDescription"]
    b = kinesis.describe_stream_consumer(StreamARN=sarn, ConsumerName="d")["ConsumerDescription"]
    both = kinesis.describe_stream_consumer(StreamARN=sarn, ConsumerName="d",
                                            ConsumerARN=c["ConsumerARN"])["ConsumerDescription"]
    assert a == b == both
    assert a["ConsumerName"] == "d" and a["ConsumerARN"] == c["ConsumerARN"]
    assert a["ConsumerStatus"] == "ACTIVE" and a["StreamARN"] == sarn
    assert a["ConsumerCreationTimestamp"] == c["ConsumerCreationTimestamp"]


def test_describe_an_unknown_consumer_is_not_found(kinesis, make_stream):
    name = make_stream()
    arn = f"{helpers.stream_arn(name)}/consumer/ghost:1700000000"
    with raises_aws("ResourceNotFoundException",
                    f"Consumer ghost with creation timestamp 1700000000 under stream: {name}, "
                    f"account {ACCOUNT} not found."):
        kinesis.describe_stream_consumer(ConsumerARN=arn)


def test_describe_with_an_old_creation_second_is_not_found(kinesis, make_stream):
    name = make_stream()
    c = kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="o")["Consumer"]
    epoch = int(ARN_RE.fullmatch(c["ConsumerARN"]).group(3))
    with raises_aws("ResourceNotFoundException"):
        kinesis.describe_stream_consumer(ConsumerARN=f"{helpers.stream_arn(name)}/consumer/o:{epoch - 1}")


def test_describe_needs_an_arn_or_stream_and_name(kinesis, make_stream):
    name = make_stream()
    with raises_aws("InvalidArgumentException"):
        kinesis.describe_stream_consumer(StreamARN=helpers.stream_arn(name))


def test_describe_with_arns_that_disagree_is_invalid(kinesis, make_stream):
    a, b = make_stream(), make_stream()
    c = kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(a), ConsumerName="x")["Consumer"]
    with raises_aws("InvalidArgumentException"):
        kinesis.describe_stream_consumer(ConsumerARN=c["ConsumerARN"], StreamARN=helpers.stream_arn(b))


def test_describe_validates_the_consumer_arn(kinesis_unchecked):
    with raises_aws("ValidationException"):
        kinesis_unchecked.describe_stream_consumer(ConsumerARN="arn:aws:kinesis:x")


# ---- ListStreamConsumers -------------------------------------------------------------------------


def test_list_pages_by_max_results_with_sealed_tokens(kinesis, make_stream):
    name = make_stream()
    sarn = helpers.stream_arn(name)
    # a '.' never occurs in base64 text, so a name seen in a token was not sealed (random
    # base64 holds a short name like "n0" now and then by chance)
    names = [f"n.{i:02d}" for i in range(7)]
    for n in reversed(names):
        register_paced(kinesis, sarn, n)
    seen, token, pages = [], None, 0
    while True:
        kw = {"NextToken": token} if token else {}
        page = kinesis.list_stream_consumers(StreamARN=sarn, MaxResults=3, **kw)
        pages += 1
        assert len(page["Consumers"]) <= 3
        seen += [c["ConsumerName"] for c in page["Consumers"]]
        token = page.get("NextToken")
        if not token:
            break
        assert "n." not in token
    assert seen == names and pages == 3
    one = kinesis.list_stream_consumers(StreamARN=sarn)["Consumers"][0]
    assert set(one) == {"ConsumerName", "ConsumerARN", "ConsumerStatus", "ConsumerCreationTimestamp"}


def test_list_caps_a_page_at_100_whatever_max_results(kinesis, make_stream):
    name = make_stream()
    for i in range(3):
        kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName=f"c{i}")
    page = kinesis.list_stream_consumers(StreamARN=helpers.stream_arn(name), MaxResults=10000)
    assert len(page["Consumers"]) == 3 and "NextToken" not in page


def test_list_rejects_a_forged_token(kinesis, make_stream):
    name = make_stream()
    with raises_aws("InvalidArgumentException"):
        kinesis.list_stream_consumers(StreamARN=helpers.stream_arn(name), NextToken="AAAAforged")


def test_list_validates_max_results(kinesis_unchecked, make_stream):
    name = make_stream()
    with raises_aws("ValidationException", helpers.validation_message(
            helpers.constraint("0", "maxResults", "Member must have value greater than or equal to 1"))):
        kinesis_unchecked.list_stream_consumers(StreamARN=helpers.stream_arn(name), MaxResults=0)


def test_list_honours_stream_creation_timestamp(kinesis, make_stream):
    name = make_stream()
    kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="c")
    created = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    page = kinesis.list_stream_consumers(StreamARN=helpers.stream_arn(name), StreamCreationTimestamp=created)
    assert [c["ConsumerName"] for c in page["Consumers"]] == ["c"]
    with raises_aws("ResourceNotFoundException"):
        kinesis.list_stream_consumers(StreamARN=helpers.stream_arn(name), StreamCreationTimestamp=1000000)


@pytest.mark.own_server
def test_a_next_token_expires_after_300_seconds(kinesd_factory):
    srv = kinesd_factory(flags={"--test-clock": None})
    k = helpers.make_client(srv.endpoint)
    k.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(k, "s")
    for i in range(3):
        k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName=f"c{i}")
    token = k.list_stream_consumers(StreamARN=helpers.stream_arn("s"), MaxResults=1)["NextToken"]
    assert k.list_stream_consumers(StreamARN=helpers.stream_arn("s"), NextToken=token)["Consumers"]
    helpers.http_request(srv.endpoint, "POST", "/_test/advance-clock?ms=301000")
    with raises_aws("ExpiredNextTokenException"):
        k.list_stream_consumers(StreamARN=helpers.stream_arn("s"), NextToken=token)


def test_a_token_of_another_stream_is_invalid(kinesis, make_stream):
    a, b = make_stream(), make_stream()
    for i in range(2):
        kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(a), ConsumerName=f"c{i}")
    token = kinesis.list_stream_consumers(StreamARN=helpers.stream_arn(a), MaxResults=1)["NextToken"]
    with raises_aws("InvalidArgumentException"):
        kinesis.list_stream_consumers(StreamARN=helpers.stream_arn(b), NextToken=token)


# ---- DeregisterStreamConsumer --------------------------------------------------------------------


def test_deregister_then_gone_and_a_new_registration_gets_a_new_arn(kinesis, make_stream):
    name = make_stream()
    sarn = helpers.stream_arn(name)
    old = kinesis.register_stream_consumer(StreamARN=sarn, ConsumerName="r")["Consumer"]["ConsumerARN"]
    kinesis.deregister_stream_consumer(StreamARN=sarn, ConsumerName="r")
    deadline = time.monotonic() + 10
    while True:
        try:
            new = kinesis.register_stream_consumer(StreamARN=sarn, ConsumerName="r")["Consumer"]["ConsumerARN"]
            break
        except kinesis.exceptions.ResourceInUseException:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert new != old
    with raises_aws("ResourceNotFoundException"):
        kinesis.describe_stream_consumer(ConsumerARN=old)
    assert kinesis.describe_stream_consumer(ConsumerARN=new)["ConsumerDescription"]["ConsumerName"] == "r"


def test_deregister_an_unknown_consumer_is_not_found(kinesis, make_stream):
    name = make_stream()
    with raises_aws("ResourceNotFoundException"):
        kinesis.deregister_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="ghost")


# ---- DeleteStream and DescribeStreamSummary ------------------------------------------------------


def test_delete_stream_with_consumers_needs_enforce_consumer_deletion(kinesis, make_stream):
    name = make_stream()
    kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="c")
    with raises_aws("ResourceInUseException",
                    f"DeleteStream can\u2019t delete {ACCOUNT}:{name} because there are consumers associated "
                    f"with this data stream. To delete {name} anyway, set the EnforceConsumerDeletion "
                    "parameter to true to force the deletion of all the consumers that are associated with it."):
        kinesis.delete_stream(StreamName=name)
    kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    helpers.wait_until_gone(kinesis, name)
    kinesis.create_stream(StreamName=name, ShardCount=1)
    helpers.wait_for_status(kinesis, name)
    assert kinesis.list_stream_consumers(StreamARN=helpers.stream_arn(name))["Consumers"] == []
    assert kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["ConsumerCount"] == 0


def test_consumer_count_follows_registrations(kinesis, make_stream):
    name = make_stream()
    summary = lambda: kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]  # noqa: E731
    assert summary()["ConsumerCount"] == 0
    for i in range(3):
        kinesis.register_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName=f"c{i}")
    assert summary()["ConsumerCount"] == 3
    kinesis.deregister_stream_consumer(StreamARN=helpers.stream_arn(name), ConsumerName="c1")
    assert summary()["ConsumerCount"] == 2


# ---- restart and the AWS CLI ---------------------------------------------------------------------


@pytest.mark.own_server
def test_consumers_persist_across_a_restart(kinesd_factory):
    srv = kinesd_factory()
    k = helpers.make_client(srv.endpoint)
    k.create_stream(StreamName="s", ShardCount=1)
    helpers.wait_for_status(k, "s")
    for n in ("a", "b", "gone"):
        k.register_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName=n)
    k.deregister_stream_consumer(StreamARN=helpers.stream_arn("s"), ConsumerName="gone")
    before = k.list_stream_consumers(StreamARN=helpers.stream_arn("s"))["Consumers"]
    before = [c for c in before if c["ConsumerStatus"] != "DELETING"]
    srv.restart()
    k = helpers.make_client(srv.endpoint)
    after = k.list_stream_consumers(StreamARN=helpers.stream_arn("s"))["Consumers"]
    # a deregistration is durable: DELETING still, or gone, after the restart
    assert all(c["ConsumerStatus"] == "DELETING" for c in after if c["ConsumerName"] == "gone")
    after = [c for c in after if c["ConsumerStatus"] != "DELETING"]
    assert [c["ConsumerARN"] for c in after] == [c["ConsumerARN"] for c in before]
    assert [c["ConsumerName"] for c in after] == ["a", "b"]
    assert k.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["ConsumerCount"] == 2


def test_the_aws_cli_registers_lists_and_deregisters(endpoint, make_stream):
    name = make_stream()
    cli = ["aws", "--endpoint-url", endpoint, "--output", "json", "kinesis"]
    out = subprocess.run(cli + ["register-stream-consumer", "--stream-arn", helpers.stream_arn(name),
                                "--consumer-name", "cli"], check=True, capture_output=True, text=True).stdout
    arn = json.loads(out)["Consumer"]["ConsumerARN"]
    out = subprocess.run(cli + ["list-stream-consumers", "--stream-arn", helpers.stream_arn(name)],
                         check=True, capture_output=True, text=True).stdout
    assert [c["ConsumerARN"] for c in json.loads(out)["Consumers"]] == [arn]
    subprocess.run(cli + ["deregister-stream-consumer", "--consumer-arn", arn], check=True, capture_output=True)
    # DELETING for the server's transition delay (a fast CLI start can ask within it), then gone
    for _ in range(100):
        out = subprocess.run(cli + ["describe-stream-consumer", "--consumer-arn", arn], capture_output=True, text=True)
        if out.returncode != 0:
            break
        assert json.loads(out.stdout)["ConsumerDescription"]["ConsumerStatus"] == "DELETING"
    assert out.returncode != 0 and "ResourceNotFoundException" in out.stderr
