"""ListStreams: serialization, validation and behaviour."""

import uuid

import pytest

import helpers
from helpers import assert_type_errors, assert_validation, constraint, stream_arn


@pytest.fixture
def family(kinesis, make_stream):
    """Three streams sharing a unique prefix, so pagination can be checked around other streams."""
    prefix = f"it-ls-{uuid.uuid4().hex[:10]}-"
    names = [make_stream(1, name=prefix + suffix) for suffix in ("a", "b", "c")]
    return prefix, names


# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize("path,type_name", [("Limit", "Integer"), ("ExclusiveStartStreamName", "String")])
def test_list_streams_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "ListStreams", path, type_name)


@pytest.mark.not_kinesalite("no NextToken in ListStreams")
def test_list_streams_with_non_string_next_token_answers_serialization_exception(api):
    assert_type_errors(api, "ListStreams", "NextToken", "String")


# ---------------------------------------------------------------------------------- validation


def test_list_streams_with_empty_start_name_and_zero_limit_lists_every_error(api):
    resp = api.call("ListStreams", {"ExclusiveStartStreamName": "", "Limit": 0})
    assert_validation(
        resp,
        constraint(0, "limit", "Member must have value greater than or equal to 1"),
        constraint("", "exclusiveStartStreamName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        constraint("", "exclusiveStartStreamName", "Member must have length greater than or equal to 1"),
    )


def test_list_streams_with_limit_above_10000_and_long_start_name_lists_both_errors(api):
    name = "d" * 129
    resp = api.call("ListStreams", {"ExclusiveStartStreamName": name, "Limit": 1000000})
    assert_validation(
        resp,
        constraint(1000000, "limit", "Member must have value less than or equal to 10000"),
        constraint(name, "exclusiveStartStreamName", "Member must have length less than or equal to 128"),
    )


@pytest.mark.not_kinesalite("no NextToken in ListStreams")
def test_list_streams_with_empty_next_token_answers_validation_exception(api):
    resp = api.call("ListStreams", {"NextToken": ""})
    assert_validation(resp, constraint("", "nextToken", "Member must have length greater than or equal to 1"))


@pytest.mark.not_kinesalite("no NextToken in ListStreams")
def test_list_streams_with_a_made_up_next_token_is_refused(api):
    resp = api.call("ListStreams", {"NextToken": "bm90IGEgcmVhbCB0b2tlbg=="})
    assert resp.status == 400, resp
    assert resp.error_type in ("InvalidArgumentException", "ExpiredNextTokenException"), resp


# ---------------------------------------------------------------------------------- behaviour


def test_list_streams_with_no_arguments_includes_a_new_stream(kinesis, make_stream):
    name = make_stream(1)
    assert name in helpers.list_all_stream_names(kinesis)


def test_list_streams_after_exclusive_start_name_returns_the_following_names_in_order(kinesis, family):
    prefix, names = family
    out = kinesis.list_streams(ExclusiveStartStreamName=prefix, Limit=2)
    assert out["StreamNames"] == names[:2]
    assert out["HasMoreStreams"] is True
    out = kinesis.list_streams(ExclusiveStartStreamName=names[1], Limit=1)
    assert out["StreamNames"] == [names[2]]


def test_list_streams_excludes_the_exclusive_start_name_itself(kinesis, family):
    _, names = family
    out = kinesis.list_streams(ExclusiveStartStreamName=names[0], Limit=1)
    assert out["StreamNames"] == [names[1]]


def test_list_streams_returns_names_in_ascending_order(kinesis, family):
    _, names = family
    listed = helpers.list_all_stream_names(kinesis)
    assert listed == sorted(listed)
    positions = [listed.index(n) for n in names]
    assert positions == sorted(positions)


@pytest.mark.not_kinesalite("default Limit is 10 in kinesalite, 100 in AWS")
def test_list_streams_returns_up_to_100_streams_by_default(kinesis, make_stream):
    for _ in range(11):
        make_stream(1)
    out = kinesis.list_streams()
    total = len(helpers.list_all_stream_names(kinesis))
    assert len(out["StreamNames"]) == min(total, 100)
    assert out["HasMoreStreams"] is (total > 100)


@pytest.mark.not_kinesalite("no NextToken in ListStreams")
def test_list_streams_pages_with_next_token_through_every_stream_exactly_once(kinesis, family):
    _, names = family
    seen, kwargs = [], {"Limit": 2}
    for _ in range(1000):
        out = kinesis.list_streams(**kwargs)
        assert len(out["StreamNames"]) <= 2
        seen += out["StreamNames"]
        if not out["HasMoreStreams"]:
            assert "NextToken" not in out
            break
        assert out["NextToken"]
        kwargs = {"NextToken": out["NextToken"], "Limit": 2}
    assert len(seen) == len(set(seen))
    assert set(names) <= set(seen)
    assert seen == helpers.list_all_stream_names(kinesis)


@pytest.mark.not_kinesalite("no NextToken in ListStreams")
def test_list_streams_paginator_of_the_sdk_collects_every_stream(kinesis, family):
    _, names = family
    pages = kinesis.get_paginator("list_streams").paginate(PaginationConfig={"PageSize": 1})
    seen = [n for page in pages for n in page["StreamNames"]]
    assert len(seen) == len(set(seen))
    assert set(names) <= set(seen)


@pytest.mark.not_kinesalite("no StreamSummaries")
def test_list_streams_returns_a_summary_for_each_name(kinesis, family):
    prefix, names = family
    out = kinesis.list_streams(ExclusiveStartStreamName=prefix, Limit=3)
    assert out["StreamNames"] == names
    assert [s["StreamName"] for s in out["StreamSummaries"]] == names
    for summary in out["StreamSummaries"]:
        assert summary["StreamARN"] == stream_arn(summary["StreamName"])
        assert summary["StreamStatus"] == "ACTIVE"
        assert summary["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
        assert "StreamCreationTimestamp" in summary


def test_list_streams_no_longer_lists_a_deleted_stream(kinesis, family):
    prefix, names = family
    kinesis.delete_stream(StreamName=names[1])
    helpers.wait_until_gone(kinesis, names[1])
    out = kinesis.list_streams(ExclusiveStartStreamName=prefix, Limit=2)
    assert out["StreamNames"] == [names[0], names[2]]
