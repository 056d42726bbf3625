"""pika over amqps:// and paho-mqtt over TLS against the gateway's TLS doors.

Usage: tls_clients.py CA AMQPS_PORT MQTTS_PORT [CLIENT_CERT CLIENT_KEY]

Without a client certificate both log in as guest/guest. With one, pika
logs in with SASL EXTERNAL and paho sends no password: the user is the
certificate's. Prints one "ok ..." line per scenario; any failure raises.
"""
import ssl
import sys
import threading

import paho.mqtt.client as mqtt
import pika

ca, amqps_port, mqtts_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
identity = sys.argv[4:6] if len(sys.argv) >= 6 else None


def context():
    ctx = ssl.create_default_context(cafile=ca)
    if identity:
        ctx.load_cert_chain(identity[0], identity[1])
    return ctx


def amqps():
    credentials = (pika.credentials.ExternalCredentials() if identity
                   else pika.PlainCredentials("guest", "guest"))
    params = pika.ConnectionParameters(
        host="127.0.0.1", port=amqps_port, credentials=credentials,
        ssl_options=pika.SSLOptions(context(), "127.0.0.1"))
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.basic_publish(exchange="", routing_key=q, body=b"pika over tls")
    method, _, body = ch.basic_get(queue=q, auto_ack=True)
    assert body == b"pika over tls", body
    conn.close()
    print("ok pika-amqps", flush=True)


def mqtts():
    got = threading.Event()
    connected = {}
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-tls",
                    protocol=mqtt.MQTTv311)
    if not identity:
        c.username_pw_set("guest", "guest")
    c.tls_set_context(context())

    def on_connect(client, _ud, _flags, rc, _props):
        connected["rc"] = rc
        if not rc.is_failure:
            client.subscribe("tls/paho", qos=1)

    def on_subscribe(client, _ud, _mid, _codes, _props):
        client.publish("tls/paho", b"paho over tls", qos=1)

    def on_message(_client, _ud, msg):
        if msg.payload == b"paho over tls":
            got.set()

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect("127.0.0.1", mqtts_port, keepalive=30)
    c.loop_start()
    ok = got.wait(15)
    c.disconnect()
    c.loop_stop()
    assert ok, f"no message back over MQTTS (connack {connected.get('rc')})"
    print("ok paho-mqtts", flush=True)


amqps()
mqtts()
