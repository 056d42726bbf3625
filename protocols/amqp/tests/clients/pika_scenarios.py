"""RabbitMQ tutorial scenarios and the gateway's extras with pika (Python).

Usage: python3 pika_scenarios.py PORT
Prints "ok <scenario>" per scenario; exits non-zero on the first failure.
"""

import sys
import time
import uuid

import pika
from pika.exceptions import (
    ChannelClosedByBroker,
    ConnectionClosedByBroker,
    NackError,
    ProbableAccessDeniedError,
    ProbableAuthenticationError,
    UnroutableError,
)

PORT = int(sys.argv[1])
RUN = uuid.uuid4().hex[:8]


def connect(user="guest", password="guest", vhost="/"):
    params = pika.ConnectionParameters(
        host="127.0.0.1",
        port=PORT,
        virtual_host=vhost,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
    )
    return pika.BlockingConnection(params)


def name(n):
    return f"pika-{RUN}-{n}"


def take(ch, queue, count, auto_ack=True, arguments=None, timeout=5):
    """Consumes `count` messages from `queue`; returns (method, props, body) triples."""
    got = []
    for method, props, body in ch.consume(
        queue, auto_ack=auto_ack, inactivity_timeout=timeout, arguments=arguments
    ):
        if method is None:
            raise AssertionError(f"timed out on {queue} after {len(got)} of {count}")
        got.append((method, props, body))
        if len(got) == count:
            break
    ch.cancel()
    return got


def ok(scenario):
    print("ok", scenario, flush=True)


def hello_world(conn):
    ch = conn.channel()
    q = name("hello")
    ch.queue_declare(queue=q)
    ch.basic_publish(exchange="", routing_key=q, body=b"Hello World!")
    [(m, p, body)] = take(ch, q, 1)
    assert body == b"Hello World!", body
    ok("hello_world")


def work_queues(conn):
    ch = conn.channel()
    q = name("tasks")
    ch.queue_declare(queue=q, durable=True)
    for i in range(10):
        ch.basic_publish(
            exchange="",
            routing_key=q,
            body=f"task {i}".encode(),
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
        )
    ch.basic_qos(prefetch_count=1)
    bodies = []
    for method, props, body in ch.consume(q, inactivity_timeout=5):
        assert method is not None, "timed out"
        bodies.append(body)
        ch.basic_ack(method.delivery_tag)
        if len(bodies) == 10:
            break
    ch.cancel()
    assert bodies == [f"task {i}".encode() for i in range(10)], bodies
    # A nack with requeue comes back redelivered.
    ch.basic_publish(exchange="", routing_key=q, body=b"again")
    [(m, p, b)] = take(ch, q, 1, auto_ack=False)
    ch.basic_nack(m.delivery_tag, requeue=True)
    [(m, p, b)] = take(ch, q, 1, auto_ack=False)
    assert m.redelivered and b == b"again"
    assert p.headers.get("x-delivery-count") == 1, p.headers
    ch.basic_ack(m.delivery_tag)
    ok("work_queues")


def publish_subscribe(conn):
    ch = conn.channel()
    x = name("logs")
    ch.exchange_declare(exchange=x, exchange_type="fanout")
    queues = []
    for _ in range(3):
        q = ch.queue_declare(queue="", exclusive=True).method.queue
        assert q.startswith("amq.gen-"), q
        ch.queue_bind(exchange=x, queue=q)
        queues.append(q)
    ch.basic_publish(exchange=x, routing_key="", body=b"to all")
    for q in queues:
        [(m, p, b)] = take(ch, q, 1)
        assert b == b"to all"
    ok("publish_subscribe")


def routing_and_topics(conn):
    ch = conn.channel()
    direct = name("direct")
    topic = name("topic")
    ch.exchange_declare(exchange=direct, exchange_type="direct")
    ch.exchange_declare(exchange=topic, exchange_type="topic")
    errors = ch.queue_declare(queue="", exclusive=True).method.queue
    kern = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(exchange=direct, queue=errors, routing_key="error")
    ch.queue_bind(exchange=topic, queue=kern, routing_key="kern.*")
    ch.basic_publish(exchange=direct, routing_key="info", body=b"no")
    ch.basic_publish(exchange=direct, routing_key="error", body=b"err")
    ch.basic_publish(exchange=topic, routing_key="kern.critical", body=b"kc")
    ch.basic_publish(exchange=topic, routing_key="app.critical", body=b"no")
    assert [b for _, _, b in take(ch, errors, 1)] == [b"err"]
    assert [b for _, _, b in take(ch, kern, 1)] == [b"kc"]
    assert ch.basic_get(errors, auto_ack=True) == (None, None, None)
    ok("routing_and_topics")


def rpc(conn):
    server = conn.channel()
    rpc_q = name("rpc")
    server.queue_declare(queue=rpc_q)

    def on_request(ch, method, props, body):
        ch.basic_publish(
            exchange="",
            routing_key=props.reply_to,
            properties=pika.BasicProperties(correlation_id=props.correlation_id),
            body=b"re: " + body,
        )
        ch.basic_ack(method.delivery_tag)

    server.basic_consume(queue=rpc_q, on_message_callback=on_request)
    replies = {}

    def on_reply(ch, method, props, body):
        replies[props.correlation_id] = body

    client = conn.channel()
    # With a server-named reply queue, then with direct reply-to.
    reply_q = client.queue_declare(queue="", exclusive=True).method.queue
    client.basic_consume(queue=reply_q, on_message_callback=on_reply, auto_ack=True)
    client.basic_consume(
        queue="amq.rabbitmq.reply-to", on_message_callback=on_reply, auto_ack=True
    )
    for corr, reply_to in (("c1", reply_q), ("c2", "amq.rabbitmq.reply-to")):
        client.basic_publish(
            exchange="",
            routing_key=rpc_q,
            properties=pika.BasicProperties(reply_to=reply_to, correlation_id=corr),
            body=corr.encode(),
        )
    deadline = time.time() + 5
    while len(replies) < 2 and time.time() < deadline:
        conn.process_data_events(time_limit=0.1)
    assert replies == {"c1": b"re: c1", "c2": b"re: c2"}, replies
    ok("rpc")


def publisher_confirms(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    q = name("confirmed")
    ch.queue_declare(queue=q, durable=True)
    for i in range(200):
        ch.basic_publish(
            exchange="",
            routing_key=q,
            body=str(i).encode(),
            properties=pika.BasicProperties(delivery_mode=2),
        )
    try:
        ch.basic_publish(exchange="", routing_key=name("nowhere"), body=b"x", mandatory=True)
        raise AssertionError("unroutable mandatory message was confirmed")
    except UnroutableError:
        pass
    bounded = name("bounded")
    ch.queue_declare(queue=bounded, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.basic_publish(exchange="", routing_key=bounded, body=b"1")
    try:
        ch.basic_publish(exchange="", routing_key=bounded, body=b"2")
        raise AssertionError("overflowing message was confirmed")
    except NackError:
        pass
    assert ch.queue_declare(queue=q, durable=True, passive=True).method.message_count == 200
    ok("publisher_confirms")


def extras(conn):
    ch = conn.channel()
    # FIFO with group keys.
    fifo = name("fifo")
    ch.queue_declare(queue=fifo, arguments={"x-queue-type": "fifo"})
    for body, key in ((b"a1", "a"), (b"a2", "a")):
        ch.basic_publish(
            exchange="", routing_key=fifo, body=body,
            properties=pika.BasicProperties(headers={"x-group-id": key}),
        )
    ch.basic_qos(prefetch_count=10)
    [(m, p, b)] = take(ch, fifo, 1, auto_ack=False)
    assert b == b"a1"
    ch.basic_ack(m.delivery_tag)
    [(m, p, b)] = take(ch, fifo, 1, auto_ack=False)
    assert b == b"a2"
    ch.basic_ack(m.delivery_tag)
    # Delay.
    later = name("later")
    ch.queue_declare(queue=later)
    start = time.time()
    ch.basic_publish(
        exchange="", routing_key=later, body=b"late",
        properties=pika.BasicProperties(headers={"x-delay": 400}),
    )
    [(m, p, b)] = take(ch, later, 1)
    assert b == b"late" and time.time() - start >= 0.35
    # Tags and consumer groups with an offset (rewind to the start).
    events = name("events")
    ch.queue_declare(queue=events, arguments={"x-retention": 3600000})
    for tags in ("red", "blue", "red,big"):
        ch.basic_publish(
            exchange="", routing_key=events, body=tags.encode(),
            properties=pika.BasicProperties(headers={"x-tags": tags}),
        )
    reds = take(ch, events, 2, arguments={
        "x-consumer-group": "reds", "x-stream-offset": "first", "x-tags": "red"})
    assert [b for _, _, b in reds] == [b"red", b"red,big"]
    everything = take(ch, events, 3, arguments={
        "x-consumer-group": "all", "x-stream-offset": "first"})
    assert len(everything) == 3
    # Dead letters after the delivery limit.
    dlx = name("dlx")
    dead = name("dead")
    ch.exchange_declare(exchange=dlx, exchange_type="fanout")
    ch.queue_declare(queue=dead)
    ch.queue_bind(exchange=dlx, queue=dead)
    flaky = name("flaky")
    ch.queue_declare(queue=flaky, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 0, "x-dead-letter-exchange": dlx})
    ch.basic_publish(exchange="", routing_key=flaky, body=b"poison")
    [(m, p, b)] = take(ch, flaky, 1, auto_ack=False)
    ch.basic_reject(m.delivery_tag, requeue=True)
    [(m, p, b)] = take(ch, dead, 1)
    assert b == b"poison" and "x-death" in p.headers, p.headers
    ok("extras")


def errors(conn):
    ch = conn.channel()
    try:
        ch.queue_declare(queue=name("missing"), passive=True)
        raise AssertionError("passive declare of a missing queue succeeded")
    except ChannelClosedByBroker as e:
        assert e.reply_code == 404, e
    ch = conn.channel()
    try:
        ch.queue_declare(queue="amq.reserved")
        raise AssertionError("reserved name accepted")
    except ChannelClosedByBroker as e:
        assert e.reply_code == 403, e
    ch = conn.channel()
    q = name("ttl")
    ch.queue_declare(queue=q, arguments={"x-message-ttl": 1000})
    try:
        ch.queue_declare(queue=q, arguments={"x-message-ttl": 2000})
        raise AssertionError("inequivalent redeclare accepted")
    except ChannelClosedByBroker as e:
        assert e.reply_code == 406 and "inequivalent arg 'x-message-ttl'" in e.reply_text, e
    try:
        connect(password="wrong")
        raise AssertionError("wrong password accepted")
    except (ProbableAuthenticationError, ConnectionClosedByBroker) as e:
        assert "403" in str(e) or "ACCESS_REFUSED" in str(e), e
    try:
        connect(vhost="no-such-vhost")
        raise AssertionError("unknown vhost accepted")
    except (ProbableAccessDeniedError, ConnectionClosedByBroker) as e:
        assert "530" in str(e), e
    ok("errors")


def rabbitmq_compat(conn):
    """RabbitMQ 3.13/4.x behaviours client suites rely on."""
    props = conn._impl.server_properties
    text = lambda v: v.decode() if isinstance(v, bytes) else v
    assert text(props["product"]) == "gateway", props
    for key in ("version", "platform", "copyright", "information"):
        assert text(props[key]), (key, props)
    caps = conn._impl.server_capabilities
    for cap in ("publisher_confirms", "exchange_exchange_bindings", "basic.nack",
                "consumer_cancel_notify", "connection.blocked", "consumer_priorities",
                "authentication_failure_close", "per_consumer_qos", "direct_reply_to"):
        assert caps.get(cap) is True, (cap, caps)
    # A password user's secret refresh is accepted (RabbitMQ's internal backend).
    conn.update_secret("a refreshed token", "token refresh")
    ch = conn.channel()
    # Deletes and unbinds of what is not there succeed and keep the channel.
    assert ch.queue_delete(queue=name("never-declared")).method.message_count == 0
    ch.exchange_delete(exchange=name("never-declared"))
    ch.queue_unbind(queue=name("never-declared"), exchange="amq.direct", routing_key="k")
    q = name("unbind")
    ch.queue_declare(queue=q)
    ch.queue_unbind(queue=q, exchange=name("no-such-exchange"), routing_key="k")
    ch.queue_unbind(queue=q, exchange="amq.direct", routing_key="never-bound")
    ch.queue_bind(queue=q, exchange="amq.direct", routing_key="bound")
    ch.queue_unbind(queue=q, exchange="amq.direct", routing_key="bound")
    ch.queue_unbind(queue=q, exchange="amq.direct", routing_key="bound")
    # The clean-up path after an auto-delete queue went with its consumer.
    auto = ch.queue_declare(queue="", auto_delete=True).method.queue
    ch.queue_bind(queue=auto, exchange="amq.fanout")
    tag = ch.basic_consume(auto, lambda *a: None)
    ch.basic_cancel(tag)
    ch.queue_unbind(queue=auto, exchange="amq.fanout")
    ch.queue_delete(queue=auto)
    assert ch.is_open
    # reject-publish-dlx: nacked and dead-lettered; routed to several queues,
    # a refusal by one nacks, and the others keep their copy.
    ch.confirm_delivery()
    dlx, dead, fan, other = name("rp-dlx"), name("rp-dead"), name("rp-fan"), name("rp-other")
    ch.exchange_declare(exchange=dlx, exchange_type="fanout")
    ch.queue_declare(queue=dead)
    ch.queue_bind(queue=dead, exchange=dlx)
    full = name("rp-full")
    ch.queue_declare(queue=full, arguments={
        "x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx})
    ch.exchange_declare(exchange=fan, exchange_type="fanout")
    ch.queue_declare(queue=other)
    for queue in (full, other):
        ch.queue_bind(queue=queue, exchange=fan)
    ch.basic_publish(exchange=fan, routing_key="", body=b"kept")
    try:
        ch.basic_publish(exchange=fan, routing_key="", body=b"refused")
        raise AssertionError("a publish a full queue refused was confirmed")
    except NackError:
        pass
    [(m, p, b)] = take(ch, dead, 1)
    assert b == b"refused", b
    assert p.headers["x-first-death-reason"] in ("maxlen", b"maxlen"), p.headers
    assert [b for _, _, b in take(ch, other, 2)] == [b"kept", b"refused"]
    assert ch.queue_declare(queue=full, passive=True).method.message_count == 1
    # An unknown exchange type closes the channel (406), not the connection.
    try:
        ch.exchange_declare(exchange=name("odd"), exchange_type="x-no-such-type")
        raise AssertionError("unknown exchange type accepted")
    except ChannelClosedByBroker as e:
        assert e.reply_code == 406, e
        assert "unknown exchange type 'x-no-such-type'" in e.reply_text, e
    assert conn.is_open
    conn.channel().queue_declare(queue=q, passive=True)
    ok("rabbitmq_compat")


def main():
    conn = connect()
    for scenario in (
        hello_world,
        work_queues,
        publish_subscribe,
        routing_and_topics,
        rpc,
        publisher_confirms,
        extras,
        errors,
        rabbitmq_compat,
    ):
        scenario(conn)
    conn.close()
    print("all ok")


main()
