"""AddTagsToStream, ListTagsForStream and RemoveTagsFromStream."""

import pytest

from helpers import (
    ACCOUNT,
    assert_type_errors,
    assert_validation,
    constraint,
    not_found_message,
    raises_aws,
)

INVALID_CHARACTERS = (
    "Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @."
)
ILLEGAL_TAIL = (
    " because some tags contained illegal characters. The allowed characters are "
    "Unicode letters, white-spaces, '_',',','/','=','+','-','@'."
)


def tag_pairs(kinesis, name, **kw):
    return [(t["Key"], t["Value"]) for t in kinesis.list_tags_for_stream(StreamName=name, **kw)["Tags"]]


def all_tag_pairs(kinesis, name):
    """Every tag, paging 10 at a time with ExclusiveStartTagKey."""
    pairs, kwargs = [], {"StreamName": name, "Limit": 10}
    for _ in range(20):
        out = kinesis.list_tags_for_stream(**kwargs)
        pairs += [(t["Key"], t["Value"]) for t in out["Tags"]]
        if not out["HasMoreTags"]:
            return pairs
        kwargs["ExclusiveStartTagKey"] = out["Tags"][-1]["Key"]
    raise AssertionError("ListTagsForStream never stopped reporting HasMoreTags")


# ================================================================================== AddTagsToStream
# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize("path,type_name", [("Tags", "Map"), ("Tags.a", "String"), ("StreamName", "String")])
def test_add_tags_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "AddTagsToStream", path, type_name)


# ---------------------------------------------------------------------------------- validation


def test_add_tags_without_tags_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("AddTagsToStream", {"StreamName": name})
    assert_validation(resp, constraint(None, "tags", "Member must not be null"))


def test_add_tags_with_empty_map_and_empty_name_lists_every_error(api):
    resp = api.call("AddTagsToStream", {"StreamName": "", "Tags": {}})
    assert_validation(
        resp,
        constraint("{}", "tags", "Member must have length greater than or equal to 1"),
        constraint("", "streamName", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        constraint("", "streamName", "Member must have length greater than or equal to 1"),
    )


def test_add_tags_with_129_character_key_answers_validation_exception(api, make_stream):
    name, key = make_stream(1), "k" * 129
    resp = api.call("AddTagsToStream", {"StreamName": name, "Tags": {key: "3"}})
    assert_validation(
        resp,
        constraint(
            "{" + key + "=3}",
            "tags",
            "Map keys must satisfy constraint: [Member must have length less than or equal to 128, "
            "Member must have length greater than or equal to 1]",
        ),
    )


def test_add_tags_with_257_character_value_answers_validation_exception(api, make_stream):
    name, value = make_stream(1), "v" * 257
    resp = api.call("AddTagsToStream", {"StreamName": name, "Tags": {"c": value}})
    assert_validation(
        resp,
        constraint(
            "{c=" + value + "}",
            "tags",
            "Map value must satisfy constraint: [Member must have length less than or equal to 256, "
            "Member must have length greater than or equal to 0]",
        ),
    )


def test_add_tags_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"a": "b"})


@pytest.mark.parametrize(
    "tags",
    [{"abc;def": "1"}, {"abc\tdef": "1"}, {"abc\ndef": "1"}, {"abc,def": "1"},
     {"a": "abc;def"}, {"a": "abc\tdef"}, {"a": "abc\ndef"}, {"a": "abc,def"}],
    ids=["semicolon-key", "tab-key", "newline-key", "comma-key",
         "semicolon-value", "tab-value", "newline-value", "comma-value"],
)
def test_add_tags_with_invalid_characters_answers_invalid_argument(kinesis, make_stream, tags):
    name = make_stream(1)
    with raises_aws("InvalidArgumentException", INVALID_CHARACTERS):
        kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    assert tag_pairs(kinesis, name) == []


@pytest.mark.parametrize("tags", [{"abc%def": "1"}, {"a": "abc%def"}], ids=["key", "value"])
def test_add_tags_with_percent_sign_answers_invalid_argument(kinesis, make_stream, tags):
    name = make_stream(1)
    with raises_aws(
        "InvalidArgumentException", f"Failed to add tags to stream {name} under account {ACCOUNT}" + ILLEGAL_TAIL
    ):
        kinesis.add_tags_to_stream(StreamName=name, Tags=tags)


def test_add_tags_beyond_50_tags_on_a_stream_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    for batch in range(5):
        kinesis.add_tags_to_stream(StreamName=name, Tags={f"t{batch}-{i}": "v" for i in range(10)})
    with raises_aws("InvalidArgumentException") as err:
        kinesis.add_tags_to_stream(StreamName=name, Tags={"one-too-many": "v"})
    assert err.error["Message"].startswith(
        f"Failed to add tags to stream {name} under account {ACCOUNT} "
        "because a given stream cannot have more than "
    )
    # Overwriting an existing key adds no tag, so it is still allowed at the limit.
    kinesis.add_tags_to_stream(StreamName=name, Tags={"t0-0": "new"})
    pairs = all_tag_pairs(kinesis, name)
    assert len(pairs) == 50 and ("t0-0", "new") in pairs


# ---------------------------------------------------------------------------------- behaviour


def test_add_tags_then_list_returns_them(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.add_tags_to_stream(StreamName=name, Tags={"team": "data", "env": "prod"})
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert sorted(tag_pairs(kinesis, name)) == [("env", "prod"), ("team", "data")]


def test_add_tags_accepts_unicode_letters_and_the_allowed_punctuation(kinesis, make_stream):
    name = make_stream(1)
    tags = {"a": "a", "ü0 _.": "a", "/=+-@": "a", "b": "ü0 _./=+-@", "c": ""}
    kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    assert sorted(tag_pairs(kinesis, name)) == sorted(tags.items())


def test_add_tags_with_an_existing_key_overwrites_its_value(kinesis, make_stream):
    name = make_stream(1)
    kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "1", "b": "2"})
    kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "changed"})
    assert sorted(tag_pairs(kinesis, name)) == [("a", "changed"), ("b", "2")]


def test_add_tags_answers_an_empty_body(api, make_stream):
    name = make_stream(1)
    resp = api.call("AddTagsToStream", {"StreamName": name, "Tags": {"a": "b"}})
    assert resp.status == 200, resp
    assert resp.raw == b""


@pytest.mark.not_kinesalite("allows only 10 tags per request")
def test_add_tags_accepts_more_than_10_tags_in_one_request(kinesis, make_stream):
    name = make_stream(1)
    tags = {f"key{i:02d}": str(i) for i in range(20)}
    kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    assert sorted(all_tag_pairs(kinesis, name)) == sorted(tags.items())


# ================================================================================== ListTagsForStream
# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "path,type_name", [("StreamName", "String"), ("ExclusiveStartTagKey", "String"), ("Limit", "Integer")]
)
def test_list_tags_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "ListTagsForStream", path, type_name)


# ---------------------------------------------------------------------------------- validation


def test_list_tags_with_zero_limit_and_empty_start_key_lists_both_errors(api, make_stream):
    name = make_stream(1)
    resp = api.call("ListTagsForStream", {"StreamName": name, "Limit": 0, "ExclusiveStartTagKey": ""})
    assert_validation(
        resp,
        constraint(0, "limit", "Member must have value greater than or equal to 1"),
        constraint("", "exclusiveStartTagKey", "Member must have length greater than or equal to 1"),
    )


@pytest.mark.not_kinesalite("caps Limit at 10 where AWS allows 50")
def test_list_tags_with_limit_51_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("ListTagsForStream", {"StreamName": name, "Limit": 51})
    assert_validation(resp, constraint(51, "limit", "Member must have value less than or equal to 50"))


def test_list_tags_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.list_tags_for_stream(StreamName=stream_name)


# ---------------------------------------------------------------------------------- behaviour


def test_list_tags_of_an_untagged_stream_is_empty(kinesis, make_stream):
    name = make_stream(1)
    out = kinesis.list_tags_for_stream(StreamName=name)
    assert out["Tags"] == []
    assert out["HasMoreTags"] is False


def test_list_tags_with_limit_pages_with_exclusive_start_tag_key(kinesis, make_stream):
    name = make_stream(1)
    tags = {"d": "4", "b": "2", "a": "1", "c": "3", "e": "5"}
    kinesis.add_tags_to_stream(StreamName=name, Tags=tags)
    seen, kwargs = [], {"Limit": 2}
    for _ in range(5):
        out = kinesis.list_tags_for_stream(StreamName=name, **kwargs)
        assert len(out["Tags"]) <= 2
        seen += [(t["Key"], t["Value"]) for t in out["Tags"]]
        if not out["HasMoreTags"]:
            break
        kwargs["ExclusiveStartTagKey"] = out["Tags"][-1]["Key"]
    assert sorted(seen) == sorted(tags.items())
    assert len(seen) == len(tags)


def test_list_tags_after_exclusive_start_tag_key_omits_that_key(kinesis, make_stream):
    name = make_stream(1)
    kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "1", "b": "2", "c": "3"})
    out = kinesis.list_tags_for_stream(StreamName=name, ExclusiveStartTagKey="a")
    keys = [t["Key"] for t in out["Tags"]]
    assert "a" not in keys
    assert sorted(keys) == ["b", "c"]
    assert out["HasMoreTags"] is False


def test_list_tags_with_limit_reports_has_more_tags(kinesis, make_stream):
    name = make_stream(1)
    kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "1", "b": "2", "c": "3"})
    out = kinesis.list_tags_for_stream(StreamName=name, Limit=2)
    assert len(out["Tags"]) == 2
    assert out["HasMoreTags"] is True
    out = kinesis.list_tags_for_stream(StreamName=name, Limit=3)
    assert len(out["Tags"]) == 3
    assert out["HasMoreTags"] is False


# ================================================================================== RemoveTagsFromStream
# ---------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize("path,type_name", [("TagKeys", "List"), ("TagKeys.0", "String"), ("StreamName", "String")])
def test_remove_tags_with_wrongly_typed_member_answers_serialization_exception(api, path, type_name):
    assert_type_errors(api, "RemoveTagsFromStream", path, type_name)


# ---------------------------------------------------------------------------------- validation


def test_remove_tags_without_tag_keys_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("RemoveTagsFromStream", {"StreamName": name})
    assert_validation(resp, constraint(None, "tagKeys", "Member must not be null"))


def test_remove_tags_with_empty_list_answers_validation_exception(api, make_stream):
    name = make_stream(1)
    resp = api.call("RemoveTagsFromStream", {"StreamName": name, "TagKeys": []})
    assert_validation(resp, constraint("[]", "tagKeys", "Member must have length greater than or equal to 1"))


def test_remove_tags_with_129_character_key_answers_validation_exception(api, make_stream):
    name, key = make_stream(1), "k" * 129
    resp = api.call("RemoveTagsFromStream", {"StreamName": name, "TagKeys": [key]})
    assert_validation(
        resp,
        constraint(
            f"[{key}]",
            "tagKeys",
            "Member must satisfy constraint: [Member must have length less than or equal to 128, "
            "Member must have length greater than or equal to 1]",
        ),
    )


def test_remove_tags_with_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.remove_tags_from_stream(StreamName=stream_name, TagKeys=["a"])


def test_remove_tags_with_invalid_characters_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws("InvalidArgumentException", INVALID_CHARACTERS):
        kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["abc;def"])


def test_remove_tags_with_percent_sign_answers_invalid_argument(kinesis, make_stream):
    name = make_stream(1)
    with raises_aws(
        "InvalidArgumentException", f"Failed to remove tags from stream {name} under account {ACCOUNT}" + ILLEGAL_TAIL
    ):
        kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["abc%def"])


# ---------------------------------------------------------------------------------- behaviour


def test_remove_tags_removes_only_the_named_keys(kinesis, make_stream):
    name = make_stream(1)
    kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "1", "b": "2", "c": "3"})
    kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["a", "c"])
    assert tag_pairs(kinesis, name) == [("b", "2")]


def test_remove_tags_of_a_key_that_is_not_there_succeeds(kinesis, make_stream):
    name = make_stream(1)
    kinesis.add_tags_to_stream(StreamName=name, Tags={"a": "1"})
    kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["missing"])
    assert tag_pairs(kinesis, name) == [("a", "1")]


def test_remove_tags_frees_room_under_the_50_tag_limit(kinesis, make_stream):
    name = make_stream(1)
    for batch in range(5):
        kinesis.add_tags_to_stream(StreamName=name, Tags={f"t{batch}-{i}": "v" for i in range(10)})
    kinesis.remove_tags_from_stream(StreamName=name, TagKeys=["t0-0"])
    kinesis.add_tags_to_stream(StreamName=name, Tags={"replacement": "v"})
    pairs = all_tag_pairs(kinesis, name)
    assert len(pairs) == 50 and ("replacement", "v") in pairs and ("t0-0", "v") not in pairs


def test_add_tags_with_invalid_characters_on_an_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"abc;def": "%"})


def test_remove_tags_with_invalid_characters_on_an_unknown_stream_answers_resource_not_found(kinesis, stream_name):
    with raises_aws("ResourceNotFoundException", not_found_message(stream_name)):
        kinesis.remove_tags_from_stream(StreamName=stream_name, TagKeys=["abc;def", "a%b"])
