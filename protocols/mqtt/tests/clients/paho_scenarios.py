#!/usr/bin/env python3
"""The MQTT door's scenarios from paho-mqtt (Python), 3.1.1 and 5.0.

usage: paho_scenarios.py PORT [SCENARIO ...]

Prints "ok NAME" for each scenario that passed; exits 1 at the first failure
(with the reason on stderr). The will scenario starts a child Python process
that connects with a will and kills it with SIGKILL, as a crashed device.
"""
import os
import queue
import signal
import subprocess
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"
PORT = int(sys.argv[1])
WAIT = 5.0
RUN = uuid.uuid4().hex[:8]


def topic(name):
    return f"paho/{RUN}/{name}"


class Client:
    """A paho client whose messages and acks arrive on queues."""

    def __init__(self, name, v5=True, clean=True, expiry=None, will=None, props=None):
        self.v5 = v5
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        self.connected = queue.Queue()
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kwargs = {} if v5 else {"clean_session": clean}
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{RUN}", protocol=proto, **kwargs)
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.put((mid, rc))
        self.c.on_connect = lambda c, u, flags, rc, p: self.connected.put((flags, rc, p))
        if will:
            self.c.will_set(*will)
        cprops = props
        if v5 and expiry is not None:
            cprops = cprops or Properties(PacketTypes.CONNECT)
            cprops.SessionExpiryInterval = expiry
        if v5:
            self.c.connect(HOST, PORT, keepalive=30, clean_start=clean, properties=cprops)
        else:
            self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        self.flags, self.rc, self.connack_props = self.connected.get(timeout=WAIT)

    def sub(self, filt, qos=1):
        result, _mid = self.c.subscribe(filt, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, result
        time.sleep(0.2)

    def pub(self, t, payload, qos=1, retain=False, props=None):
        info = self.c.publish(t, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(WAIT)
        return info

    def msg(self):
        return self.messages.get(timeout=WAIT)

    def nothing(self, quiet=0.4):
        try:
            m = self.messages.get(timeout=quiet)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m.topic} {m.payload!r}")

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def pubsub_qos(v5):
    sub = Client("sub", v5)
    sub.sub(topic("q/+"), qos=2)
    pub = Client("pub", v5)
    for q in (0, 1, 2):
        pub.pub(topic("q/x"), f"m{q}", qos=q)
    got = [sub.msg() for _ in range(3)]
    check([m.payload for m in got] == [b"m0", b"m1", b"m2"], [m.payload for m in got])
    check([m.qos for m in got] == [0, 1, 2], [m.qos for m in got])
    sub.nothing()
    sub.stop(), pub.stop()


def wildcards_and_retained(v5):
    pub = Client("pub", v5)
    pub.pub(topic("r/a"), "first", retain=True)
    pub.pub(topic("r/a"), "second", retain=True)
    pub.pub("$SYS/" + RUN, "sys")
    sub = Client("sub", v5)
    sub.sub(topic("r/#"))
    m = sub.msg()
    check((m.payload, m.retain) == (b"second", True), (m.payload, m.retain))
    sub.nothing()
    pub.pub(topic("r/a"), "", retain=True)
    check(sub.msg().payload == b"", "cleared retained delivered live")
    late = Client("late", v5)
    late.sub(topic("r/#"))
    late.nothing()
    every = Client("every", v5)
    every.sub("#", qos=0)
    pub.pub("$SYS/" + RUN, "sys")
    every.nothing()
    for c in (pub, sub, late, every):
        c.stop()


def persistent_session(v5):
    if v5:
        s = Client("keeper", True, clean=False, expiry=300)
    else:
        s = Client("keeper", False, clean=False)
    s.sub(topic("p/#"))
    s.stop()
    pub = Client("pub", v5)
    for i in range(3):
        pub.pub(topic("p/x"), f"q{i}")
    if v5:
        s = Client("keeper", True, clean=False, expiry=300)
        present = s.flags.session_present
    else:
        s = Client("keeper", False, clean=False)
        present = s.flags.session_present
    check(present, "session present")
    got = [s.msg().payload for _ in range(3)]
    check(got == [b"q0", b"q1", b"q2"], got)
    s.stop()
    pub.stop()
    # End it.
    if v5:
        Client("keeper", True, clean=True, expiry=0).stop()
    else:
        Client("keeper", False, clean=True).stop()


def will_on_sigkill(v5):
    watcher = Client("watcher", v5)
    watcher.sub(topic("will/#"))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(PORT), topic("will/gone"), "5" if v5 else "4", RUN],
        stdout=subprocess.PIPE,
        env=os.environ,
    )
    line = child.stdout.readline()
    check(line.strip() == b"connected", line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    m = watcher.msg()
    check((m.topic, m.payload) == (topic("will/gone"), b"killed"), (m.topic, m.payload))
    # A clean DISCONNECT: no will.
    polite = Client("polite", v5, will=(topic("will/polite"), "no", 1, False))
    polite.stop()
    watcher.nothing()
    watcher.stop()


CHILD = r"""
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, will_topic, version, run = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="doomed-" + run, protocol=proto)
c.will_set(will_topic, "killed", qos=1)
c.connect("127.0.0.1", port, keepalive=30)
c.loop_start()
time.sleep(0.5)
print("connected", flush=True)
time.sleep(60)
"""


def v5_properties():
    sub = Client("sub")
    sub.sub(topic("props"))
    pub = Client("pub")
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("k", "v"), ("k", "w")]
    p.ContentType = "text/plain"
    p.ResponseTopic = topic("replies")
    p.CorrelationData = b"corr-1"
    p.MessageExpiryInterval = 60
    p.PayloadFormatIndicator = 1
    pub.pub(topic("props"), "héllo", props=p)
    m = sub.msg()
    got = m.properties
    check(got.UserProperty == [("k", "v"), ("k", "w")], got.UserProperty)
    check(got.ContentType == "text/plain", got.ContentType)
    check(got.ResponseTopic == topic("replies"), got.ResponseTopic)
    check(got.CorrelationData == b"corr-1", got.CorrelationData)
    check(59 <= got.MessageExpiryInterval <= 60, got.MessageExpiryInterval)
    # PUBACK reason code: nobody subscribed (0x10).
    pub.pub(topic("nobody"), "x")
    mid, rc = pub.acks.get(timeout=WAIT)
    while True:
        try:
            mid, rc = pub.acks.get(timeout=0.5)
        except queue.Empty:
            break
    check(rc.value == 0x10, rc)
    sub.stop(), pub.stop()


def v5_subscription_options():
    me = Client("me")
    opts = mqtt.SubscribeOptions(qos=1, noLocal=True)
    me.c.subscribe(topic("nl"), options=opts)
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 7
    me.c.subscribe(topic("ids/+"), options=mqtt.SubscribeOptions(qos=1), properties=sp)
    sp2 = Properties(PacketTypes.SUBSCRIBE)
    sp2.SubscriptionIdentifier = 8
    me.c.subscribe(topic("ids/#"), options=mqtt.SubscribeOptions(qos=1), properties=sp2)
    time.sleep(0.3)
    other = Client("other")
    me.pub(topic("nl"), "mine")
    other.pub(topic("nl"), "theirs")
    check(me.msg().payload == b"theirs", "no local")
    other.pub(topic("ids/x"), "both")
    m = me.msg()
    check(sorted(m.properties.SubscriptionIdentifier) == [7, 8], m.properties.SubscriptionIdentifier)
    me.nothing()
    me.stop(), other.stop()


def v5_shared():
    a, b = Client("a"), Client("b")
    for c in (a, b):
        c.sub(f"$share/g/{topic('sh')}")
    pub = Client("pub")
    for i in range(10):
        pub.pub(topic("sh"), str(i))
    got = []
    deadline = time.time() + WAIT
    while len(got) < 10 and time.time() < deadline:
        for c in (a, b):
            try:
                got.append((c, c.messages.get(timeout=0.05).payload))
            except queue.Empty:
                pass
    check(sorted(int(p) for _, p in got) == list(range(10)), got)
    check({c for c, _ in got} == {a, b}, "both members received")
    for c in (a, b, pub):
        c.stop()


def v5_topic_alias():
    sub = Client("sub")
    sub.sub(topic("alias"))
    pub = Client("pub")
    p = Properties(PacketTypes.PUBLISH)
    p.TopicAlias = 1
    pub.pub(topic("alias"), "one", props=p)
    p = Properties(PacketTypes.PUBLISH)
    p.TopicAlias = 1
    pub.pub("", "two", props=p)
    got = [sub.msg() for _ in range(2)]
    check([(m.topic, m.payload) for m in got] == [(topic("alias"), b"one"), (topic("alias"), b"two")], got)
    sub.stop(), pub.stop()


def v5_tag_filters():
    """x-tags / x-tag-match user properties on SUBSCRIBE, as AMQP's consumer argument."""
    def sub_props(*pairs):
        sp = Properties(PacketTypes.SUBSCRIBE)
        sp.UserProperty = list(pairs)
        return sp

    def pub_props(tags):
        p = Properties(PacketTypes.PUBLISH)
        p.UserProperty = [("x-tags", tags)]
        return p

    subacks = queue.Queue()
    red = Client("red")
    red.c.on_subscribe = lambda c, u, mid, codes, p: subacks.put([rc.value for rc in codes])
    red.c.subscribe(topic("tags/#"), options=mqtt.SubscribeOptions(qos=1),
                    properties=sub_props(("x-tags", "red")))
    check(subacks.get(timeout=WAIT) == [1], "granted")
    both = Client("both")
    both.c.subscribe(topic("tags/#"), options=mqtt.SubscribeOptions(qos=1),
                     properties=sub_props(("x-tags", "red,big"), ("x-tag-match", "all")))
    # Malformed: SUBACK 0x83, nothing subscribed.
    red.c.subscribe(topic("other/#"), options=mqtt.SubscribeOptions(qos=1),
                    properties=sub_props(("x-tags", "red"), ("x-tag-match", "most")))
    check(subacks.get(timeout=WAIT) == [0x83], "malformed refused")
    time.sleep(0.3)
    pub = Client("pub")
    for tags in ("red", "blue", "red,big"):
        pub.pub(topic("tags/x"), tags, props=pub_props(tags))
    pub.pub(topic("other/x"), "other", props=pub_props("red"))
    got = sorted(red.msg().payload for _ in range(2))
    check(got == [b"red", b"red,big"], got)
    red.nothing()
    check(both.msg().payload == b"red,big", "match all")
    both.nothing()
    for c in (red, both, pub):
        c.stop()


SCENARIOS = {
    "pubsub-qos-311": lambda: pubsub_qos(False),
    "pubsub-qos-5": lambda: pubsub_qos(True),
    "wildcards-retained-311": lambda: wildcards_and_retained(False),
    "wildcards-retained-5": lambda: wildcards_and_retained(True),
    "persistent-session-311": lambda: persistent_session(False),
    "persistent-session-5": lambda: persistent_session(True),
    "will-on-sigkill-311": lambda: will_on_sigkill(False),
    "will-on-sigkill-5": lambda: will_on_sigkill(True),
    "properties-5": v5_properties,
    "subscription-options-5": v5_subscription_options,
    "shared-5": v5_shared,
    "topic-alias-5": v5_topic_alias,
    "tag-filters-5": v5_tag_filters,
}

if __name__ == "__main__":
    names = sys.argv[2:] or list(SCENARIOS)
    for name in names:
        try:
            SCENARIOS[name]()
        except Exception as e:  # noqa: BLE001 - report any failure with its scenario
            print(f"FAIL {name}: {e!r}", file=sys.stderr, flush=True)
            sys.exit(1)
        print(f"ok {name}", flush=True)
