// RabbitMQ tutorial scenarios and the gateway's extras with amqplib (Node).
//
// Usage: node amqplib_scenarios.js PORT
// Prints "ok <scenario>" per scenario; exits non-zero on the first failure.
'use strict';

const amqp = require('amqplib');
const assert = require('assert');
const crypto = require('crypto');

const PORT = Number(process.argv[2]);
const RUN = crypto.randomBytes(4).toString('hex');
const url = (user = 'guest', pass = 'guest', vhost = '%2F') =>
  `amqp://${user}:${pass}@127.0.0.1:${PORT}/${vhost}`;
const name = (n) => `amqplib-${RUN}-${n}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Collects `count` messages from a queue (consumer cancelled afterwards).
async function take(ch, queue, count, opts = {}) {
  const got = [];
  let tag;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`timed out on ${queue} after ${got.length} of ${count}`)),
      5000,
    );
    ch.consume(queue, (msg) => {
      got.push(msg);
      if (got.length === count) {
        clearTimeout(timer);
        resolve();
      }
    }, { noAck: true, ...opts }).then((r) => { tag = r.consumerTag; }, reject);
  });
  await ch.cancel(tag);
  return got;
}

async function expectClose(promise, code) {
  try {
    await promise;
  } catch (e) {
    assert.strictEqual(e.code, code, String(e));
    return e;
  }
  throw new Error(`expected a ${code} close`);
}

const ok = (s) => console.log('ok', s);

async function helloWorld(conn) {
  const ch = await conn.createChannel();
  const q = name('hello');
  await ch.assertQueue(q, { durable: false });
  ch.sendToQueue(q, Buffer.from('Hello World!'));
  const [m] = await take(ch, q, 1);
  assert.strictEqual(m.content.toString(), 'Hello World!');
  ok('hello_world');
}

async function workQueues(conn) {
  const ch = await conn.createChannel();
  const q = name('tasks');
  await ch.assertQueue(q, { durable: true });
  for (let i = 0; i < 10; i++) ch.sendToQueue(q, Buffer.from(`task ${i}`), { persistent: true });
  await ch.prefetch(1);
  const bodies = [];
  await new Promise((resolve) => {
    ch.consume(q, (m) => {
      bodies.push(m.content.toString());
      ch.ack(m);
      if (bodies.length === 10) resolve();
    }, { noAck: false });
  });
  assert.deepStrictEqual(bodies, [...Array(10).keys()].map((i) => `task ${i}`));
  ok('work_queues');
}

async function publishSubscribe(conn) {
  const ch = await conn.createChannel();
  const x = name('logs');
  await ch.assertExchange(x, 'fanout', { durable: false });
  const qs = [];
  for (let i = 0; i < 3; i++) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    assert.ok(queue.startsWith('amq.gen-'), queue);
    await ch.bindQueue(queue, x, '');
    qs.push(queue);
  }
  ch.publish(x, '', Buffer.from('to all'));
  for (const q of qs) {
    const [m] = await take(ch, q, 1);
    assert.strictEqual(m.content.toString(), 'to all');
  }
  ok('publish_subscribe');
}

async function routingAndTopics(conn) {
  const ch = await conn.createChannel();
  const direct = name('direct');
  const topic = name('topic');
  await ch.assertExchange(direct, 'direct', { durable: false });
  await ch.assertExchange(topic, 'topic', { durable: false });
  const errors = (await ch.assertQueue('', { exclusive: true })).queue;
  const kern = (await ch.assertQueue('', { exclusive: true })).queue;
  await ch.bindQueue(errors, direct, 'error');
  await ch.bindQueue(kern, topic, 'kern.#');
  ch.publish(direct, 'info', Buffer.from('no'));
  ch.publish(direct, 'error', Buffer.from('err'));
  ch.publish(topic, 'kern.disk.full', Buffer.from('kdf'));
  ch.publish(topic, 'app.critical', Buffer.from('no'));
  assert.strictEqual((await take(ch, errors, 1))[0].content.toString(), 'err');
  assert.strictEqual((await take(ch, kern, 1))[0].content.toString(), 'kdf');
  await sleep(50);
  assert.strictEqual(await ch.get(errors, { noAck: true }), false);
  ok('routing_and_topics');
}

async function rpc(conn) {
  const server = await conn.createChannel();
  const rpcQ = name('rpc');
  await server.assertQueue(rpcQ, { durable: false });
  await server.consume(rpcQ, (m) => {
    server.sendToQueue(m.properties.replyTo, Buffer.from(`re: ${m.content}`), {
      correlationId: m.properties.correlationId,
    });
    server.ack(m);
  });
  const client = await conn.createChannel();
  const replies = {};
  const { queue: replyQ } = await client.assertQueue('', { exclusive: true });
  const onReply = (m) => { replies[m.properties.correlationId] = m.content.toString(); };
  await client.consume(replyQ, onReply, { noAck: true });
  await client.consume('amq.rabbitmq.reply-to', onReply, { noAck: true });
  client.sendToQueue(rpcQ, Buffer.from('c1'), { replyTo: replyQ, correlationId: 'c1' });
  client.sendToQueue(rpcQ, Buffer.from('c2'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: 'c2' });
  for (let i = 0; i < 100 && Object.keys(replies).length < 2; i++) await sleep(50);
  assert.deepStrictEqual(replies, { c1: 're: c1', c2: 're: c2' });
  ok('rpc');
}

async function publisherConfirms(conn) {
  const ch = await conn.createConfirmChannel();
  const q = name('confirmed');
  await ch.assertQueue(q, { durable: true });
  for (let i = 0; i < 200; i++) ch.sendToQueue(q, Buffer.from(String(i)), { persistent: true });
  await ch.waitForConfirms();
  const returned = new Promise((resolve) => ch.once('return', resolve));
  ch.publish('', name('nowhere'), Buffer.from('lost'), { mandatory: true });
  const r = await returned;
  assert.strictEqual(r.fields.replyCode, 312);
  await ch.waitForConfirms();
  const bounded = name('bounded');
  await ch.assertQueue(bounded, { durable: false, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
  const outcome = (body) => new Promise((resolve) =>
    ch.sendToQueue(bounded, Buffer.from(body), {}, (err) => resolve(err ? 'nack' : 'ack')));
  assert.strictEqual(await outcome('1'), 'ack');
  assert.strictEqual(await outcome('2'), 'nack');
  const { messageCount } = await ch.checkQueue(q);
  assert.strictEqual(messageCount, 200);
  ok('publisher_confirms');
}

async function extras(conn) {
  const ch = await conn.createChannel();
  const fifo = name('fifo');
  await ch.assertQueue(fifo, { durable: false, arguments: { 'x-queue-type': 'fifo' } });
  ch.sendToQueue(fifo, Buffer.from('a1'), { headers: { 'x-group-id': 'a' } });
  ch.sendToQueue(fifo, Buffer.from('a2'), { headers: { 'x-group-id': 'a' } });
  const first = await ch.get(fifo, { noAck: false });
  await sleep(30);
  assert.strictEqual(first.content.toString(), 'a1');
  assert.strictEqual(await ch.get(fifo, { noAck: false }), false, 'a2 waits for a1');
  ch.ack(first);
  await sleep(30);
  assert.strictEqual((await ch.get(fifo, { noAck: true })).content.toString(), 'a2');

  const later = name('later');
  await ch.assertQueue(later, { durable: false });
  const start = Date.now();
  ch.sendToQueue(later, Buffer.from('late'), { headers: { 'x-delay': 400 } });
  const [d] = await take(ch, later, 1);
  assert.ok(Date.now() - start >= 350 && d.content.toString() === 'late');

  const events = name('events');
  await ch.assertQueue(events, { durable: false, arguments: { 'x-retention': 3600000 } });
  for (const tags of ['red', 'blue', 'red,big']) {
    ch.sendToQueue(events, Buffer.from(tags), { headers: { 'x-tags': tags } });
  }
  const reds = await take(ch, events, 2, {
    arguments: { 'x-consumer-group': 'reds', 'x-stream-offset': 'first', 'x-tags': 'red' },
  });
  assert.deepStrictEqual(reds.map((m) => m.content.toString()), ['red', 'red,big']);
  const all = await take(ch, events, 3, {
    arguments: { 'x-consumer-group': 'all', 'x-stream-offset': 'first' },
  });
  assert.strictEqual(all.length, 3);

  const dlx = name('dlx');
  const dead = name('dead');
  await ch.assertExchange(dlx, 'fanout', { durable: false });
  await ch.assertQueue(dead, { durable: false });
  await ch.bindQueue(dead, dlx, '');
  const flaky = name('flaky');
  await ch.assertQueue(flaky, {
    durable: false,
    arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 0, 'x-dead-letter-exchange': dlx },
  });
  ch.sendToQueue(flaky, Buffer.from('poison'));
  const [p] = await take(ch, flaky, 1, { noAck: false });
  ch.reject(p, true);
  const [gone] = await take(ch, dead, 1);
  assert.strictEqual(gone.content.toString(), 'poison');
  assert.ok(Array.isArray(gone.properties.headers['x-death']));
  ok('extras');
}

async function errors(conn) {
  let ch = await conn.createChannel();
  ch.on('error', () => {});
  await expectClose(ch.checkQueue(name('missing')), 404);
  ch = await conn.createChannel();
  ch.on('error', () => {});
  await expectClose(ch.assertQueue('amq.reserved'), 403);
  ch = await conn.createChannel();
  ch.on('error', () => {});
  const q = name('ttl');
  await ch.assertQueue(q, { durable: false, arguments: { 'x-message-ttl': 1000 } });
  const e = await expectClose(ch.assertQueue(q, { durable: false, arguments: { 'x-message-ttl': 2000 } }), 406);
  assert.ok(String(e).includes("inequivalent arg 'x-message-ttl'"), String(e));
  try {
    await amqp.connect(url('guest', 'wrong'));
    throw new Error('wrong password accepted');
  } catch (err) {
    assert.ok(/ACCESS_REFUSED|403|got <ConnectionClose/.test(String(err)), String(err));
  }
  try {
    await amqp.connect(url('guest', 'guest', 'no-such-vhost'));
    throw new Error('unknown vhost accepted');
  } catch (err) {
    assert.ok(/NOT_ALLOWED|530|got <ConnectionClose/.test(String(err)), String(err));
  }
  ok('errors');
}

// RabbitMQ 3.13/4.x behaviours client suites rely on.
async function rabbitmqCompat(conn) {
  const props = conn.connection.serverProperties;
  assert.strictEqual(props.product, 'gateway');
  for (const key of ['version', 'platform', 'copyright', 'information']) {
    assert.ok(typeof props[key] === 'string' && props[key].length > 0, key);
  }
  for (const cap of ['publisher_confirms', 'exchange_exchange_bindings', 'basic.nack',
    'consumer_cancel_notify', 'connection.blocked', 'consumer_priorities',
    'authentication_failure_close', 'per_consumer_qos', 'direct_reply_to']) {
    assert.strictEqual(props.capabilities[cap], true, cap);
  }
  // A password user's secret refresh is accepted (RabbitMQ's internal backend).
  await conn.updateSecret(Buffer.from('a refreshed token'), 'token refresh');
  const ch = await conn.createChannel();
  // Deletes and unbinds of what is not there succeed and keep the channel.
  assert.strictEqual((await ch.deleteQueue(name('never-declared'))).messageCount, 0);
  await ch.deleteExchange(name('never-declared'));
  await ch.unbindQueue(name('never-declared'), 'amq.direct', 'k');
  const q = name('unbind');
  await ch.assertQueue(q, { durable: false });
  await ch.unbindQueue(q, name('no-such-exchange'), 'k');
  await ch.unbindQueue(q, 'amq.direct', 'never-bound');
  await ch.unbindExchange(name('no-such-exchange'), 'amq.direct', 'k');
  // The clean-up path after an auto-delete queue went with its consumer.
  const { queue: auto } = await ch.assertQueue('', { autoDelete: true, durable: false });
  await ch.bindQueue(auto, 'amq.fanout', '');
  const { consumerTag } = await ch.consume(auto, () => {});
  await ch.cancel(consumerTag);
  await ch.unbindQueue(auto, 'amq.fanout', '');
  await ch.deleteQueue(auto);
  // reject-publish-dlx: nacked and dead-lettered.
  const cc = await conn.createConfirmChannel();
  const dlx = name('rp-dlx');
  const dead = name('rp-dead');
  await cc.assertExchange(dlx, 'fanout', { durable: false });
  await cc.assertQueue(dead, { durable: false });
  await cc.bindQueue(dead, dlx, '');
  const full = name('rp-full');
  await cc.assertQueue(full, {
    durable: false,
    arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish-dlx', 'x-dead-letter-exchange': dlx },
  });
  const outcome = (body) => new Promise((resolve) =>
    cc.sendToQueue(full, Buffer.from(body), {}, (err) => resolve(err ? 'nack' : 'ack')));
  assert.strictEqual(await outcome('kept'), 'ack');
  assert.strictEqual(await outcome('refused'), 'nack');
  const [d] = await take(cc, dead, 1);
  assert.strictEqual(d.content.toString(), 'refused');
  assert.strictEqual(d.properties.headers['x-first-death-reason'], 'maxlen');
  // An unknown exchange type closes the channel (406), not the connection.
  const bad = await conn.createChannel();
  bad.on('error', () => {});
  const e = await expectClose(bad.assertExchange(name('odd'), 'x-no-such-type'), 406);
  assert.ok(String(e).includes("unknown exchange type 'x-no-such-type'"), String(e));
  await ch.checkQueue(q);
  ok('rabbitmq_compat');
}

(async () => {
  const conn = await amqp.connect(url());
  for (const scenario of [helloWorld, workQueues, publishSubscribe, routingAndTopics, rpc,
    publisherConfirms, extras, errors, rabbitmqCompat]) {
    await scenario(conn);
  }
  await conn.close();
  console.log('all ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
