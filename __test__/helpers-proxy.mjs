// A TCP proxy in front of a Redis server, for tests of links that a NAT or a load balancer
// drops silently (issue 23 item 3). Each proxied connection can be black-holed (every byte
// either way is swallowed, nothing is closed: what a silently dropped link looks like to
// the client until TCP gives up) or reset.
import net from 'node:net';

/**
 * Starts a proxy on a free loopback port forwarding to `127.0.0.1:targetPort`. `conns` holds
 * the live proxied connections: `{ id, ranges, holed, client, upstream }`, where `ranges` says
 * the client sent an XRANGE/XREVRANGE on it (a direct range-read connection or a crate
 * fallback).
 */
export async function startProxy(targetPort) {
  const conns = new Set();
  let seq = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const c = { id: ++seq, ranges: false, holed: false, client, upstream };
    conns.add(c);
    client.on('data', (d) => {
      if (/XREVRANGE|XRANGE/i.test(d.toString('latin1'))) c.ranges = true;
      if (!c.holed) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (c.mangle) {
        d = c.mangle(d);
        c.mangle = null;
      }
      if (!c.holed) client.write(d);
    });
    const end = () => {
      conns.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    conns,
    /** Black-holes every live connection matching `pred`; returns how many. */
    blackhole(pred) {
      let n = 0;
      for (const c of conns) if (pred(c)) { c.holed = true; n++; }
      return n;
    },
    /**
     * Rewrites the next chunk the server sends on every live connection matching `pred` with
     * `fn(buffer) -> buffer` (once per connection); returns how many.
     */
    mangleNext(pred, fn) {
      let n = 0;
      for (const c of conns) if (pred(c)) { c.mangle = fn; n++; }
      return n;
    },
    /** Resets (RST) every live connection matching `pred`; returns how many. */
    reset(pred) {
      let n = 0;
      for (const c of [...conns]) if (pred(c)) { c.client.resetAndDestroy(); c.upstream.destroy(); conns.delete(c); n++; }
      return n;
    },
    async close() {
      for (const c of [...conns]) { c.client.destroy(); c.upstream.destroy(); }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
