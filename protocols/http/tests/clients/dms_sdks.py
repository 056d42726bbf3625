"""Both cloud DMS SDKs against the gateway, configured only with an endpoint
and credentials, as their documentation tells a DMS user:

- Huawei Cloud `huaweicloudsdkdms` (DmsClient, AK/SK signing by
  `huaweicloudsdkcore`), every queue, group, message, dead-letter and quota call;
- Open Telekom Cloud `otcextensions` on openstacksdk/keystoneauth1 (`conn.dms`,
  Keystone v3 password login, the `dms` endpoint from the token's catalog),
  every queue, group and message call;

then bad input: wrong SK, stale X-Sdk-Date, body changed after signing,
expired token, token of another project, AK of a user without rights.

Usage: dms_sdks.py PORT, with GW_* variables set by the Rust test
(protocols/http/tests/cloud_sdks.rs). Prints "ok <step>" lines and "all ok".
"""

import datetime
import json
import os
import sys
import time
import warnings

import requests

warnings.simplefilter("ignore")

PORT = sys.argv[1]
BASE = f"http://127.0.0.1:{PORT}"
USER, PASSWORD = os.environ["GW_USER"], os.environ["GW_PASSWORD"]
PROJECT = os.environ["GW_PROJECT"]  # the tenant's name
OTHER_USER, OTHER_PASSWORD = os.environ["GW_OTHER_USER"], os.environ["GW_OTHER_PASSWORD"]
EXPIRED_TOKEN = os.environ["GW_EXPIRED_TOKEN"]


def ok(step):
    print(f"ok {step}", flush=True)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def create_access_key(user, password):
    """The IAM way: POST /v3.0/OS-CREDENTIAL/credentials."""
    r = requests.post(
        f"{BASE}/v3.0/OS-CREDENTIAL/credentials",
        auth=(user, password),
        json={"credential": {"user_id": user, "description": "sdk test"}},
    )
    expect(r.status_code == 201, f"create credential: {r.status_code} {r.text}")
    c = r.json()["credential"]
    expect(len(c["access"]) == 20 and len(c["secret"]) == 40, c)
    expect(c["status"] == "active", c)
    return c["access"], c["secret"]


def project_id_of(token_body):
    return token_body["token"]["project"]["id"]


# ---------------------------------------------------------------- credentials
def credentials_api(ak):
    auth = (USER, PASSWORD)
    r = requests.get(f"{BASE}/v3.0/OS-CREDENTIAL/credentials", auth=auth, params={"user_id": USER})
    expect(r.status_code == 200 and any(c["access"] == ak for c in r.json()["credentials"]), r.text)
    expect(all("secret" not in c for c in r.json()["credentials"]), "list shows no SK")
    r = requests.get(f"{BASE}/v3.0/OS-CREDENTIAL/credentials/{ak}", auth=auth)
    expect(r.status_code == 200 and r.json()["credential"]["access"] == ak, r.text)
    ok("credentials_api")


# ---------------------------------------------------------------- Huawei SDK
def huawei(ak, sk, project_id):
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions import exceptions
    from huaweicloudsdkdms.v2 import (
        ConfirmConsumptionMessagesReq, ConfirmConsumptionMessagesRequest,
        ConfirmDeadLettersMessagesReq, ConfirmDeadLettersMessagesRequest,
        ConfirmMessageEntity, ConsumeDeadlettersMessageRequest, ConsumeMessagesRequest,
        CreateConsumerGroupReq, CreateConsumerGroupRequest, CreateQueueReq, CreateQueueRequest,
        DeleteQueueRequest, DeleteSpecifiedConsumerGroupRequest, DmsClient, GroupEntity,
        ListConsumerGroupsRequest, ListQueuesRequest, SendMessageEntity, SendMessagesReq,
        SendMessagesRequest, ShowQueueRequest, ShowQuotasRequest,
    )

    def client(ak, sk, project=project_id):
        return (DmsClient.new_builder()
                .with_credentials(BasicCredentials(ak, sk, project))
                .with_endpoints([BASE])
                .build())

    c = client(ak, sk)
    q = c.create_queue(CreateQueueRequest(body=CreateQueueReq(
        name="hw-orders", queue_mode="NORMAL", description="from the Huawei SDK",
        redrive_policy="enable", max_consume_count=1)))
    expect(q.name == "hw-orders" and q.id.startswith("q-"), q)
    qid = q.id
    listed = c.list_queues(ListQueuesRequest(include_deadletter=True))
    expect(any(x.id == qid for x in listed.queues) and listed.total >= 1, listed)
    shown = c.show_queue(ShowQueueRequest(queue_id=qid, include_deadletter=True))
    expect(shown.name == "hw-orders" and shown.redrive_policy == "enable"
           and shown.max_consume_count == 1, shown)
    g = c.create_consumer_group(CreateConsumerGroupRequest(
        queue_id=qid, body=CreateConsumerGroupReq(groups=[GroupEntity(name="hw-g"), GroupEntity(name="hw-spare")])))
    expect([x.name for x in g.groups] == ["hw-g", "hw-spare"], g)
    gid = g.groups[0].id
    groups = c.list_consumer_groups(ListConsumerGroupsRequest(
        queue_id=qid, include_deadletter=True, include_messages_num=True, page_size=10, current_page=1))
    expect(groups.queue_id == qid and len(groups.groups) == 2, groups)
    c.delete_specified_consumer_group(DeleteSpecifiedConsumerGroupRequest(queue_id=qid, group_id="hw-spare"))
    sent = c.send_messages(SendMessagesRequest(queue_id=qid, body=SendMessagesReq(return_id=True, messages=[
        SendMessageEntity(body={"order": 1}, attributes={"k": "v"}, tags=["red"]),
        SendMessageEntity(body="second", delay_time=0),
    ])))
    expect(len(sent.messages) == 2 and all(m.state == 0 and m.id for m in sent.messages), sent)
    got = c.consume_messages(ConsumeMessagesRequest(queue_id=qid, consumer_group_id=gid, max_msgs=10, time_wait=3))
    expect(len(got.body) == 2, got)
    bodies = sorted(json.dumps(m.message.body) for m in got.body)
    expect(bodies == sorted([json.dumps({"order": 1}), json.dumps("second")]), bodies)
    first = next(m for m in got.body if m.message.body == {"order": 1})
    expect(first.message.attributes == {"k": "v"} and first.message.tags == ["red"], first)
    other = next(m for m in got.body if m is not first)
    acked = c.confirm_consumption_messages(ConfirmConsumptionMessagesRequest(
        queue_id=qid, consumer_group_id=gid, body=ConfirmConsumptionMessagesReq(message=[
            ConfirmMessageEntity(handler=first.handler, status="success")])))
    expect(acked.success == 1 and acked.fail == 0, acked)
    # max_consume_count 1: one failed consumption makes it a dead letter.
    failed = c.confirm_consumption_messages(ConfirmConsumptionMessagesRequest(
        queue_id=qid, consumer_group_id=gid, body=ConfirmConsumptionMessagesReq(message=[
            ConfirmMessageEntity(handler=other.handler, status="fail")])))
    expect(failed.fail == 1, failed)
    dead = c.consume_deadletters_message(ConsumeDeadlettersMessageRequest(
        queue_id=qid, consumer_group_id=gid, max_msgs=10, time_wait=5))
    expect(len(dead.body) == 1 and dead.body[0].message.body == "second", dead)
    dacked = c.confirm_dead_letters_messages(ConfirmDeadLettersMessagesRequest(
        queue_id=qid, consumer_group_id=gid, body=ConfirmDeadLettersMessagesReq(message=[
            ConfirmMessageEntity(handler=dead.body[0].handler, status="success")])))
    expect(dacked.success == 1, dacked)
    quotas = c.show_quotas(ShowQuotasRequest())
    queues_quota = next(r for r in quotas.quotas.resources if r.type == "queue")
    expect(queues_quota.used >= 1 and queues_quota.quota >= queues_quota.used, quotas)

    # DMS's answer to a name already taken: 400 with its code.
    try:
        c.create_queue(CreateQueueRequest(body=CreateQueueReq(name="hw-orders")))
        raise AssertionError("a second queue of that name was created")
    except exceptions.ClientRequestException as e:
        expect(e.status_code == 400 and e.error_code == "10240017", (e.status_code, e.error_code))

    # The tenant's name works as the project id too.
    by_name = client(ak, sk, PROJECT).show_queue(ShowQueueRequest(queue_id=qid))
    expect(by_name.id == qid, by_name)

    # Wrong SK: 401 saying the signature does not match.
    try:
        client(ak, "x" * 40).list_queues(ListQueuesRequest())
        raise AssertionError("a wrong SK was accepted")
    except exceptions.ClientRequestException as e:
        expect(e.status_code == 401 and "signature does not match" in e.error_msg, (e.status_code, e.error_msg))
    ok("huawei_wrong_sk")

    c.delete_queue(DeleteQueueRequest(queue_id=qid))
    try:
        c.show_queue(ShowQueueRequest(queue_id=qid))
        raise AssertionError("deleted queue still shown")
    except exceptions.ClientRequestException as e:
        expect(e.status_code == 404, e.status_code)
    ok("huawei_sdk")


def signed_raw(ak, sk, method, path, body, date=None, tamper=None):
    """Signs with huaweicloudsdkcore's own Signer, then sends (optionally changed)."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    headers = {"Content-Type": "application/json"}
    if date:
        headers["X-Sdk-Date"] = date
    req = SdkRequest(method=method, schema="http", host=f"127.0.0.1:{PORT}", resource_path=path,
                     query_params=[], header_params=headers, body=body)
    Signer(BasicCredentials(ak, sk)).sign(req)
    sent = tamper(req.body) if tamper else req.body
    return requests.request(method, BASE + path, headers=req.header_params, data=sent)


def signature_bad_input(ak, sk, project_id):
    path = f"/v2/{project_id}/queues"
    body = json.dumps({"name": "signed-q"})
    r = signed_raw(ak, sk, "POST", path, body)
    expect(r.status_code == 200, f"a good signature: {r.status_code} {r.text}")
    stale = (datetime.datetime.utcnow() - datetime.timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    r = signed_raw(ak, sk, "POST", path, json.dumps({"name": "stale-q"}), date=stale)
    expect(r.status_code == 401 and "X-Sdk-Date" in r.json()["error_msg"], f"stale date: {r.status_code} {r.text}")
    ok("stale_x_sdk_date")
    r = signed_raw(ak, sk, "POST", path, json.dumps({"name": "honest-q"}),
                   tamper=lambda b: b.replace(b"honest-q", b"forged-q"))
    expect(r.status_code == 401 and "signature does not match" in r.json()["error_msg"],
           f"tampered body: {r.status_code} {r.text}")
    r = requests.get(f"{BASE}/v2/{project_id}/queues/forged-q", auth=(USER, PASSWORD))
    expect(r.status_code == 404, "the tampered request created nothing")
    ok("tampered_body")
    requests.delete(f"{BASE}/v2/{project_id}/queues/signed-q", auth=(USER, PASSWORD))


def ak_without_rights(project_id):
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions import exceptions
    from huaweicloudsdkdms.v2 import DmsClient, ListQueuesRequest

    ak, sk = create_access_key(OTHER_USER, OTHER_PASSWORD)
    c = (DmsClient.new_builder().with_credentials(BasicCredentials(ak, sk, project_id))
         .with_endpoints([BASE]).build())
    try:
        c.list_queues(ListQueuesRequest())
        raise AssertionError("a user without rights listed the project's queues")
    except exceptions.ClientRequestException as e:
        expect(e.status_code == 404, e.status_code)  # the project is not theirs to see
    ok("ak_without_rights")


# ---------------------------------------------------------------- OTC SDK
def otc_connect(user, password, project_name):
    import openstack
    from otcextensions import sdk

    conn = openstack.connect(
        auth_url=f"{BASE}/v3", username=user, password=password,
        project_name=project_name, user_domain_name="Default", project_domain_name="Default",
        region_name="local", load_yaml_config=False, load_envvars=False,
    )
    sdk.register_otc_extensions(conn)
    return conn


def otc():
    from openstack import exceptions

    conn = otc_connect(USER, PASSWORD, PROJECT)
    dms = conn.dms
    q = dms.create_queue(name="otc-q", description="from otcextensions", redrive_policy="enable",
                         max_consume_count=1)
    expect(q.id and q.id.startswith("q-"), q)
    expect(any(x.id == q.id for x in dms.queues(include_deadletter=True)), "listed")
    expect(dms.get_queue(q.id).name == "otc-q", "get")
    expect(dms.find_queue("otc-q").id == q.id, "find by name")
    expect(dms.find_queue(q.id).id == q.id, "find by id")
    g = dms.create_group(q, "otc-g")
    expect(g.name == "otc-g" and g.id, g)
    spare = dms.create_group(q.id, "otc-spare")
    expect(sorted(x.name for x in dms.groups(q)) == ["otc-g", "otc-spare"], "groups")
    expect(dms.find_group(q, "otc-g").id == g.id, "find group")
    dms.delete_group(q, spare)
    expect([x.name for x in dms.groups(q)] == ["otc-g"], "group deleted")
    sent = dms.send_messages(q, [{"body": "one", "attributes": {"a": "1"}}, {"body": {"n": 2}}], return_id=True)
    expect(len(sent.messages) == 2, sent)
    one = dms.send_message(q, body="three")
    expect(one is not None, "send_message")
    got = list(dms.consume_message(q, g, max_msgs=10, time_wait=3))
    expect(len(got) == 3, [m.body for m in got])
    expect(sorted(json.dumps(m.body) for m in got) == sorted(json.dumps(b) for b in ["one", {"n": 2}, "three"]),
           [m.body for m in got])
    dms.ack_message(q, g, [m.id for m in got])
    expect(list(dms.consume_message(q, g, max_msgs=10, time_wait=1)) == [], "all acked")
    dms.delete_queue(q)
    expect(dms.find_queue("otc-q") is None, "queue deleted")
    try:
        dms.delete_queue(q, ignore_missing=False)
        raise AssertionError("deleted twice")
    except exceptions.ResourceNotFound:
        pass
    ok("otc_sdk")
    return conn


def tokens(conn):
    token = conn.session.get_token()
    # Validate and HEAD with X-Subject-Token.
    h = {"X-Auth-Token": token, "X-Subject-Token": token}
    r = requests.get(f"{BASE}/v3/auth/tokens", headers=h)
    expect(r.status_code == 200 and r.json()["token"]["user"]["name"] == USER, r.text)
    project_id = project_id_of(r.json())
    expect(requests.head(f"{BASE}/v3/auth/tokens", headers=h).status_code == 200, "HEAD")
    # The token on a DMS route; the v1.0 and v2 paths, by project id.
    for v in ("v1.0", "v2"):
        r = requests.get(f"{BASE}/{v}/{project_id}/queues", headers={"X-Auth-Token": token})
        expect(r.status_code == 200, f"{v}: {r.status_code} {r.text}")
    # Expired.
    r = requests.get(f"{BASE}/v2/{project_id}/queues", headers={"X-Auth-Token": EXPIRED_TOKEN})
    expect(r.status_code == 401 and "expired" in r.json()["error_msg"], f"expired: {r.status_code} {r.text}")
    ok("expired_token")
    # A token of another project.
    other = otc_connect(OTHER_USER, OTHER_PASSWORD, "other")
    other_token = other.session.get_token()
    r = requests.get(f"{BASE}/v2/{project_id}/queues", headers={"X-Auth-Token": other_token})
    expect(r.status_code == 403 and "scoped" in r.json()["error_msg"], f"other project: {r.status_code} {r.text}")
    ok("token_of_another_project")
    # Revoke.
    mine = requests.post(f"{BASE}/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": USER, "password": PASSWORD,
                                                                     "domain": {"name": "Default"}}}},
        "scope": {"project": {"id": project_id}}}})
    expect(mine.status_code == 201, mine.text)
    t = mine.headers["X-Subject-Token"]
    r = requests.delete(f"{BASE}/v3/auth/tokens", headers={"X-Auth-Token": t, "X-Subject-Token": t})
    expect(r.status_code == 204, r.text)
    r = requests.get(f"{BASE}/v2/{project_id}/queues", headers={"X-Auth-Token": t})
    expect(r.status_code == 401, "revoked token refused")
    # Wrong password.
    bad = requests.post(f"{BASE}/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": USER, "password": "nope"}}},
        "scope": {"project": {"name": PROJECT}}}})
    expect(bad.status_code == 401 and "error" in bad.json(), bad.text)
    ok("tokens")
    return project_id


def main():
    conn = otc()
    project_id = tokens(conn)
    ak, sk = create_access_key(USER, PASSWORD)
    credentials_api(ak)
    huawei(ak, sk, project_id)
    signature_bad_input(ak, sk, project_id)
    ak_without_rights(project_id)
    print("all ok", flush=True)


if __name__ == "__main__":
    main()
