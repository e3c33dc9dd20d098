// Issue 2: public IP detection against local HTTP servers (never the internet).
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { addon, fastOptions, hgetall, startStandalone, waitFor } from './helpers-foundation.mjs';

const { PerseusNetwork, detectPublicIp } = addon;

const servers = [];
const hits = {};

/** A local HTTP server on 127.0.0.1 running `handler`; resolves its base URL. */
async function serve(name, handler) {
  hits[name] = 0;
  const server = http.createServer((req, res) => {
    hits[name]++;
    handler(req, res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return `http://127.0.0.1:${server.address().port}/ip`;
}

const text = (body, status = 200) => (req, res) => {
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(body);
};

let url; // name → endpoint URL
let redis;
const networks = [];

before(async () => {
  url = {
    garbage: await serve('garbage', text('hello')),
    hanging: await serve('hanging', () => { /* never answers */ }),
    stalledBody: await serve('stalledBody', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('203.'); // headers and part of a body, then nothing
    }),
    good: await serve('good', text('203.0.113.7\n')),
    ipv6: await serve('ipv6', text('2001:db8::1')),
    badOctet: await serve('badOctet', text('999.1.1.1')),
    trailing: await serve('trailing', text('203.0.113.7 is your ip')),
    html: await serve('html', text('<html><body>203.0.113.7</body></html>')),
    error500: await serve('error500', text('203.0.113.8', 500)),
  };
  redis = await startStandalone();
});

after(async () => {
  for (const n of networks) await n.close().catch(() => {});
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }
  await redis?.stop();
});

describe('detectPublicIp', () => {
  test('[garbage, hanging, good] with timeoutMs 300 resolves the good answer in < 1.5 s', async () => {
    const before = { ...hits };
    const t0 = Date.now();
    const ip = await detectPublicIp({ endpoints: [url.garbage, url.hanging, url.good], timeoutMs: 300 });
    const took = Date.now() - t0;
    assert.equal(ip, '203.0.113.7');
    assert.ok(took < 1500, `took ${took} ms`);
    // Tried in order: every endpoint was asked once.
    for (const name of ['garbage', 'hanging', 'good']) assert.equal(hits[name] - before[name], 1, `${name} hits`);
  });

  test('the first valid answer wins: later endpoints are not asked', async () => {
    const before = hits.ipv6;
    const ip = await detectPublicIp({ endpoints: [url.good, url.ipv6], timeoutMs: 300 });
    assert.equal(ip, '203.0.113.7');
    assert.equal(hits.ipv6, before, 'asked an endpoint after a valid answer');
  });

  test('all bad endpoints resolve null (never reject), within the per-endpoint timeouts', async () => {
    const t0 = Date.now();
    const ip = await detectPublicIp({
      endpoints: [url.garbage, url.hanging, url.stalledBody, url.badOctet, url.trailing, url.html, url.error500],
      timeoutMs: 300,
    });
    const took = Date.now() - t0;
    assert.equal(ip, null);
    assert.ok(took < 2500, `took ${took} ms for 2 hanging endpoints at 300 ms each`);
  });

  test('a body that stalls after its headers times out too', async () => {
    const t0 = Date.now();
    assert.equal(await detectPublicIp({ endpoints: [url.stalledBody, url.good], timeoutMs: 300 }), '203.0.113.7');
    assert.ok(Date.now() - t0 < 1500);
  });

  test('an IPv6 answer is accepted', async () => {
    assert.equal(await detectPublicIp({ endpoints: [url.ipv6], timeoutMs: 300 }), '2001:db8::1');
  });

  test('a refused connection is skipped', async () => {
    const s = http.createServer();
    await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
    const dead = `http://127.0.0.1:${s.address().port}/`;
    await new Promise((resolve) => s.close(resolve));
    assert.equal(await detectPublicIp({ endpoints: [dead, url.good], timeoutMs: 300 }), '203.0.113.7');
  });

  test('never rejects: malformed endpoints are skipped like unreachable ones, malformed options resolve null', async () => {
    assert.equal(await detectPublicIp({ endpoints: ['ftp://x', 'not a url', url.good], timeoutMs: 300 }), '203.0.113.7');
    for (const options of [{ endpoints: ['ftp://x'] }, { endpoints: [] }, { timeoutMs: -1 }, { endpoints: 'http://x' }, { endpoints: [42] }]) {
      assert.equal(await detectPublicIp(options), null, JSON.stringify(options));
    }
  });
});

describe('public IP of a started network', () => {
  test('start() does not wait for a hanging endpoint; the hash gets the detected IP soon after', async () => {
    const { publicIp, ...opts } = fastOptions(redis);
    assert.equal(publicIp, false);
    const net = new PerseusNetwork({ ...opts, publicIpEndpoints: [url.hanging, url.good], publicIpTimeoutMs: 300 });
    networks.push(net);
    const t0 = Date.now();
    const info = await net.start();
    const took = Date.now() - t0;
    assert.ok(took < 1000, `start() took ${took} ms`);
    assert.equal(info.state, 'running');
    const key = `perseus:instance:${net.instanceId}`;
    const seen = await waitFor('the detected public IP in the hash', async () => {
      const h = await hgetall(redis, key);
      return h.publicIp === '203.0.113.7' ? Date.now() - t0 : null;
    }, 1500);
    assert.ok(seen < 1500, `publicIp appeared after ${seen} ms`);
    const got = await net.getInstance(net.instanceId);
    assert.equal(got.publicIp, '203.0.113.7');
    await net.drain();
    await net.close();
  });

  test('a fixed publicIp is stored as given and nothing is asked', async () => {
    const before = { ...hits };
    const net = new PerseusNetwork(fastOptions(redis, { publicIp: '198.51.100.4', publicIpEndpoints: [url.good] }));
    networks.push(net);
    const info = await net.start();
    assert.equal(info.publicIp, '198.51.100.4');
    assert.equal((await hgetall(redis, `perseus:instance:${net.instanceId}`)).publicIp, '198.51.100.4');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(hits.good, before.good, 'asked an endpoint although publicIp was fixed');
    await net.close();
  });

  test("no endpoint answers: start() is still fast and the hash keeps publicIp 'unknown'", async () => {
    const { publicIp, ...opts } = fastOptions(redis);
    const net = new PerseusNetwork({ ...opts, publicIpEndpoints: [url.hanging, url.garbage], publicIpTimeoutMs: 300 });
    networks.push(net);
    const t0 = Date.now();
    await net.start();
    assert.ok(Date.now() - t0 < 1000);
    await new Promise((r) => setTimeout(r, 900));
    assert.equal((await hgetall(redis, `perseus:instance:${net.instanceId}`)).publicIp, 'unknown');
    await net.close();
  });
});
