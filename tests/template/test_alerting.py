"""Alert topic: encrypted, publishable only by this account's services, optional e-mail."""

from template_helpers import PREFIX, getatt, props, ref, resources, statements, sub

PUBLISHERS = ["cloudwatch.amazonaws.com", "events.amazonaws.com", "states.amazonaws.com"]


def test_topic(cfn):
    p = props(cfn, "AlertTopic")
    assert p["TopicName"] == sub(f"{PREFIX}-alerts")
    assert p["KmsMasterKeyId"] == getatt("SnsKey", "Arn")


def test_topic_policy_allows_only_account_services_to_publish(cfn):
    (policy,) = resources(cfn, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [ref("AlertTopic")]
    allows = [s for s in statements(policy["Properties"]["PolicyDocument"]) if s["Effect"] == "Allow"]
    assert len(allows) == 1
    (s,) = allows
    assert sorted(s["Principal"]["Service"]) == PUBLISHERS
    assert set(s["Principal"]) == {"Service"}
    assert s["Action"] == "sns:Publish"
    assert s["Resource"] == ref("AlertTopic")
    assert s["Condition"] == {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}}


def test_key_and_topic_trust_the_same_publishers(cfn):
    key_services = [
        sorted(s["Principal"]["Service"])
        for s in statements(props(cfn, "SnsKey")["KeyPolicy"])
        if "Service" in s["Principal"]
    ]
    assert key_services == [PUBLISHERS]


def test_email_subscription_only_when_configured(cfn):
    subs = resources(cfn, "AWS::SNS::Subscription")
    assert list(subs) == ["AlertEmailSubscription"]
    sub_ = subs["AlertEmailSubscription"]
    assert sub_["Condition"] == "HasAlertEmail"
    assert sub_["Properties"] == {
        "TopicArn": ref("AlertTopic"),
        "Protocol": "email",
        "Endpoint": ref("AlertEmail"),
    }
