// Issue 20: the nemesis' own tools do what the checker assumes. A member's proxy forwards,
// slows, black-holes (stalls, then delivers) and cuts (resets, refuses) for real, and on a
// cluster rewrites node addresses so a member never reaches a node around its proxy.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { AddressRewriter, ProxyGroup } from '../nemesis/proxy.mjs';
import { RespClient, RespError, RespReader, encodeValue } from '../nemesis/resp.mjs';
import { startStandalone } from '../scripts/redis.mjs';

let redis;
const groups = [];
const clients = [];
before(async () => { redis = await startStandalone(); });
after(async () => {
  for (const c of clients) c.close();
  for (const g of groups) await g.close();
  await redis?.stop();
});

async function proxied() {
  const group = await new ProxyGroup({ upstreams: [redis.port] }).start();
  groups.push(group);
  const client = new RespClient(group.portFor(), { timeoutMs: 3000 });
  clients.push(client);
  await client.connect();
  return { group, client };
}

describe('nemesis proxy', () => {
  test('forwards; latency delays each reply by about twice the one-way delay', async () => {
    const { group, client } = await proxied();
    assert.equal(await client.call('PING'), 'PONG');
    group.setMode('latency', 150);
    const t = Date.now();
    assert.equal(await client.call('SET', 'k', 'v'), 'OK');
    assert.ok(Date.now() - t >= 290, `round trip ${Date.now() - t} ms under 150 ms each way`);
    group.setMode('normal');
    assert.equal(await client.call('GET', 'k'), 'v');
  });

  test('a black hole stalls every byte, new connections too, and delivers them once healed', async () => {
    const { group, client } = await proxied();
    group.setMode('blackhole');
    let answered = false;
    const pending = client.call('INCR', 'bh').then((v) => { answered = true; return v; });
    const late = new RespClient(group.portFor(), { timeoutMs: 3000 });
    clients.push(late);
    const lateConnected = late.connect();
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(answered, false, 'a reply crossed the black hole');
    assert.equal(await redis.cli('GET', 'bh'), '', 'the command reached Redis through the black hole');
    group.setMode('normal');
    assert.equal(await pending, 1);
    await lateConnected;
    assert.equal(await late.call('GET', 'bh'), '1');
  });

  test('a cut resets every connection and refuses new ones until healed', async () => {
    const { group, client } = await proxied();
    group.setMode('cut');
    await assert.rejects(client.call('PING'), /closed|reset|EPIPE/);
    const refused = new RespClient(group.portFor(), { timeoutMs: 1000 });
    await assert.rejects(refused.connect().then(() => refused.call('PING')));
    group.setMode('normal');
    const again = new RespClient(group.portFor(), { timeoutMs: 3000 });
    clients.push(again);
    await again.connect();
    assert.equal(await again.call('PING'), 'PONG');
  });

  test('the RESP codec round-trips a CLUSTER SLOTS reply split across chunks at every byte', () => {
    const slots = [
      [0, 8191, [Buffer.from('127.0.0.1'), 30001, Buffer.from('id1')], [Buffer.from('127.0.0.1'), 30002, Buffer.from('id2')]],
      [8192, 16383, [Buffer.from('127.0.0.1'), 30002, Buffer.from('id2')]],
    ];
    const bytes = encodeValue(slots);
    for (let cut = 1; cut < bytes.length; cut += 7) {
      const reader = new RespReader();
      const got = [...reader.push(bytes.subarray(0, cut)), ...reader.push(bytes.subarray(cut))];
      assert.equal(got.length, 1);
      assert.deepEqual(encodeValue(got[0].value), bytes);
    }
  });

  test('on a cluster, CLUSTER SLOTS and -MOVED/-ASK name the member\'s listeners, not the nodes, at every split of the reply stream (F20)', async () => {
    const group = await new ProxyGroup({ upstreams: [30001, 30002], cluster: true }).start();
    groups.push(group);
    const [p1, p2] = [group.portFor(30001), group.portFor(30002)];
    const node = (port, id) => [Buffer.from('127.0.0.1'), port, Buffer.from(id), []];
    const slots = (a, b) => [
      [0, 8191, node(a, 'id1'), node(b, 'id2')],
      [8192, 16383, node(30003, 'id3')], // not ours: left alone
    ];
    // An ordinary array and plain values are left alone, even where they hold the host.
    const ordinary = [[Buffer.from('ip'), Buffer.from('127.0.0.1'), Buffer.from('port'), Buffer.from('30001')], 42, Buffer.from('127.0.0.1'), [Buffer.from('a'), 1]];
    const replies = (a, b) => [slots(a, b), new RespError(`MOVED 3999 127.0.0.1:${b}`), ...ordinary,
      new RespError(`ASK 1 127.0.0.1:${a}`), new RespError('ERR nope')];
    const stream = Buffer.concat(replies(30001, 30002).map(encodeValue));
    const want = Buffer.concat(replies(p1, p2).map(encodeValue));
    assert.notDeepEqual(want, stream, 'the fixture has addresses to rewrite');
    const run = (cuts) => {
      const r = new AddressRewriter((real) => group.listenerFor(real));
      const parts = [];
      let from = 0;
      for (const cut of [...cuts, stream.length]) { parts.push(r.push(stream.subarray(from, cut))); from = cut; }
      return Buffer.concat(parts);
    };
    assert.deepEqual(run([]), want);
    for (let cut = 1; cut < stream.length; cut++) assert.deepEqual(run([cut]), want, `split at byte ${cut}`);
    for (let i = 0; i < 500; i++) {
      const cuts = [...new Set(Array.from({ length: 4 }, () => 1 + Math.floor(Math.random() * (stream.length - 1))))].sort((a, b) => a - b);
      assert.deepEqual(run(cuts), want, `split at bytes ${cuts}`);
    }
  });
});
