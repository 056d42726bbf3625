#!/usr/bin/env node
// The MQTT door's scenarios from MQTT.js (the `mqtt` npm package), meant for
// MQTT over WebSocket: `node ws_mqtt.js ws://127.0.0.1:8080/mqtt` (MQTT.js
// asks for the `mqtt` subprotocol). The same script accepts mqtt://HOST:PORT,
// which is how the MQTT door's own tests run it until the HTTP door serves /mqtt.
//
// Prints "ok NAME" per scenario; exits 1 at the first failure.
'use strict';
const mqtt = require('mqtt');

const url = process.argv[2];
if (!url) {
  console.error('usage: ws_mqtt.js URL');
  process.exit(2);
}
const run = Math.random().toString(16).slice(2, 10);
const topic = (name) => `mqttjs/${run}/${name}`;
const WAIT = 5000;

function client(name, opts = {}) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, {
      clientId: `${name}-${run}`,
      reconnectPeriod: 0,
      connectTimeout: WAIT,
      protocolVersion: 5,
      ...opts,
    });
    c.inbox = [];
    c.waiters = [];
    c.on('message', (t, payload, packet) => {
      const m = { topic: t, payload: payload.toString(), packet };
      const w = c.waiters.shift();
      if (w) w(m);
      else c.inbox.push(m);
    });
    c.once('connect', (connack) => {
      c.connack = connack;
      resolve(c);
    });
    c.once('error', reject);
  });
}

function next(c) {
  return new Promise((resolve, reject) => {
    if (c.inbox.length) return resolve(c.inbox.shift());
    const timer = setTimeout(() => reject(new Error('no message in time')), WAIT);
    c.waiters.push((m) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

function check(cond, what) {
  if (!cond) throw new Error(typeof what === 'string' ? what : JSON.stringify(what));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function pubsub(version) {
  const sub = await client('sub', { protocolVersion: version });
  await sub.subscribeAsync(topic(`q${version}/+`), { qos: 2 });
  const pub = await client('pub', { protocolVersion: version });
  for (const qos of [0, 1, 2]) {
    await pub.publishAsync(topic(`q${version}/x`), `m${qos}`, { qos });
  }
  const got = [await next(sub), await next(sub), await next(sub)];
  check(got.map((m) => m.payload).join() === 'm0,m1,m2', got.map((m) => m.payload));
  check(got.map((m) => m.packet.qos).join() === '0,1,2', got.map((m) => m.packet.qos));
  await sub.endAsync();
  await pub.endAsync();
}

async function retained(version) {
  const pub = await client('pub', { protocolVersion: version });
  await pub.publishAsync(topic(`r${version}`), 'kept', { qos: 1, retain: true });
  const sub = await client('sub', { protocolVersion: version });
  await sub.subscribeAsync(topic(`r${version}`), { qos: 1 });
  const m = await next(sub);
  check(m.payload === 'kept' && m.packet.retain, m);
  await pub.publishAsync(topic(`r${version}`), '', { qos: 1, retain: true });
  await sub.endAsync();
  await pub.endAsync();
}

async function willOnDroppedConnection(version) {
  const watcher = await client('watcher', { protocolVersion: version });
  await watcher.subscribeAsync(topic(`w${version}`), { qos: 1 });
  const victim = await client('victim', {
    protocolVersion: version,
    will: { topic: topic(`w${version}`), payload: Buffer.from('gone'), qos: 1, retain: false },
  });
  await sleep(200);
  // The network connection goes away without DISCONNECT.
  victim.stream.destroy();
  const m = await next(watcher);
  check(m.payload === 'gone', m);
  await watcher.endAsync();
}

async function userProperties() {
  const sub = await client('sub');
  await sub.subscribeAsync(topic('props'), { qos: 1 });
  const pub = await client('pub');
  await pub.publishAsync(topic('props'), 'body', {
    qos: 1,
    properties: { userProperties: { unit: 'celsius' }, contentType: 'text/plain' },
  });
  const m = await next(sub);
  const p = m.packet.properties || {};
  check(p.contentType === 'text/plain', p);
  check(p.userProperties && p.userProperties.unit === 'celsius', p);
  await sub.endAsync();
  await pub.endAsync();
}

async function persistentSession() {
  const opts = { clean: false, properties: { sessionExpiryInterval: 300 } };
  let s = await client('keeper', opts);
  await s.subscribeAsync(topic('p'), { qos: 1 });
  await s.endAsync();
  const pub = await client('pub');
  await pub.publishAsync(topic('p'), 'queued', { qos: 1 });
  s = await client('keeper', opts);
  check(s.connack.sessionPresent, 'session present');
  const m = await next(s);
  check(m.payload === 'queued', m);
  await s.endAsync();
  await pub.endAsync();
}

const scenarios = [
  ['pubsub-311', () => pubsub(4)],
  ['pubsub-5', () => pubsub(5)],
  ['retained-311', () => retained(4)],
  ['retained-5', () => retained(5)],
  ['will-311', () => willOnDroppedConnection(4)],
  ['will-5', () => willOnDroppedConnection(5)],
  ['user-properties-5', userProperties],
  ['persistent-session-5', persistentSession],
];

(async () => {
  for (const [name, f] of scenarios) {
    try {
      await f();
    } catch (e) {
      console.error(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
      process.exit(1);
    }
    console.log(`ok ${name}`);
  }
  process.exit(0);
})();
