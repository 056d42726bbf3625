// MQTT.js over wss:// (the HTTPS door's /mqtt), trusting the test's CA.
// Usage: node tls_wss.js URL CA [CERT KEY]. Without a client certificate it
// logs in as guest/guest; with one it sends no password. Prints "ok wss".
const fs = require('fs');
const mqtt = require('mqtt');
const [url, ca, cert, key] = process.argv.slice(2);
const options = { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10000,
    ca: fs.readFileSync(ca), clientId: 'mqttjs-wss' };
if (cert) {
    options.cert = fs.readFileSync(cert);
    options.key = fs.readFileSync(key);
} else {
    options.username = 'guest';
    options.password = 'guest';
}
const c = mqtt.connect(url, options);
let done = false;
// Errors after the round trip (a reset while closing) do not count.
const fail = (e) => { if (done) return; console.error(e); process.exit(1); };
c.on('error', fail);
setTimeout(() => fail('timed out'), 15000).unref();
c.on('connect', () => {
    c.subscribe('tls/wss', { qos: 1 }, (err) => {
        if (err) fail(err);
        c.publish('tls/wss', 'mqtt.js over wss', { qos: 1 });
    });
});
c.on('message', (topic, payload) => {
    if (payload.toString() === 'mqtt.js over wss') {
        done = true;
        console.log('ok wss');
        c.end(() => process.exit(0));
    }
});
