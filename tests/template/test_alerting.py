"""Alert topic: encrypted, publishable only by this account's services, optional e-mail."""

from template_helpers import PREFIX, getatt, props, ref, resources, statements, sub

PUBLISHERS = ["cloudwatch.amazonaws.com", "events.amazonaws.com", "states.amazonaws.com"]


def test_topic(cfn):
    p = props(cfn, "AlertTopic")
    assert p["TopicName"] == sub(f"{PREFIX}-alerts")
    assert p["KmsMasterKeyId"] == getatt("SnsKey", "Arn")


# Each publishing service, and the ARN pattern of this stack's resources it may publish for.
ARN = "arn:${AWS::Partition}:{service}:${AWS::Region}:${AWS::AccountId}:{kind}" + PREFIX + "-*"
SOURCE_ARNS = {
    "cloudwatch.amazonaws.com": ARN.replace("{service}", "cloudwatch").replace("{kind}", "alarm:"),
    "events.amazonaws.com": ARN.replace("{service}", "events").replace("{kind}", "rule/"),
    "states.amazonaws.com": ARN.replace("{service}", "states").replace("{kind}", "stateMachine:"),
}


def test_topic_policy_allows_only_account_services_to_publish(cfn):
    (policy,) = resources(cfn, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [ref("AlertTopic")]
    stmts = statements(policy["Properties"]["PolicyDocument"])
    allows = [s for s in stmts if s["Effect"] == "Allow"]
    assert sorted(s["Principal"]["Service"] for s in allows) == PUBLISHERS
    for s in allows:
        assert set(s["Principal"]) == {"Service"}
        assert s["Action"] == "sns:Publish"
        assert s["Resource"] == ref("AlertTopic")
        # confused-deputy guard: this account, and only this stack's alarms / rules / state machines
        assert s["Condition"] == {
            "StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")},
            "ArnLike": {"aws:SourceArn": sub(SOURCE_ARNS[s["Principal"]["Service"]])},
        }
    (deny,) = [s for s in stmts if s["Effect"] == "Deny"]
    assert deny == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sns:Publish",
        "Resource": ref("AlertTopic"),
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


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
