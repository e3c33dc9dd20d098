// Diagnostic (not a row): where a cluster listing's time goes. Starts a 6-node cluster, writes
// N instances (argv[2], default 2000), then times `listInstances()` of a never-started network
// and reports, per master, the commands it served and the read()/write() syscalls of this
// process during the listing (from /proc/self/io: syscr/syscw).
//   node bench/tools/cluster-list.mjs 10000 [rounds]
//   strace -f -c -e trace=write,writev,sendto,recvfrom,read node bench/tools/cluster-list.mjs 2000 1
import fs from 'node:fs';
import Redis from 'ioredis';
import { startCluster } from '../../scripts/redis.mjs';
import { instanceFields, loadAddon } from '../lib/common.mjs';

const n = Number(process.argv[2] ?? 2000);
const rounds = Number(process.argv[3] ?? 3);
const cluster = await startCluster();
const admin = new Redis.Cluster(cluster.urls, { enableAutoPipelining: true });
try {
  const now = Date.now();
  const ops = [];
  for (let i = 0; i < n; i++) {
    const id = `peer-${i}`;
    ops.push(admin.hset(`perseus:instance:${id}`, ...instanceFields(id)));
    ops.push(admin.set(`perseus:heartbeat:${id}`, JSON.stringify({ lastBeat: now, state: 'running', exchange: 'coinbase' }), 'PX', 3_600_000));
    ops.push(admin.zadd('perseus:instances', now + 3_600_000, id));
  }
  await Promise.all(ops);
  const { PerseusNetwork } = loadAddon();
  const net = new PerseusNetwork({ clusterNodes: cluster.urls, exchangeId: 1, exchangeName: 'x', publicIp: false, logLevel: 'silent' });
  await net.listInstances(); // connect + warm up
  const masters = admin.nodes('master');
  const stat = async () => Promise.all(masters.map(async (m) => {
    const info = await m.info('stats');
    return Number(info.match(/total_commands_processed:(\d+)/)[1]);
  }));
  const redisCpu = async () => {
    let sum = 0;
    for (const node of admin.nodes('all')) {
      const info = await node.info('cpu');
      sum += Number(info.match(/used_cpu_sys:([0-9.]+)/)[1]) + Number(info.match(/used_cpu_user:([0-9.]+)/)[1]);
    }
    return sum * 1000;
  };
  const io = () => {
    const t = fs.readFileSync('/proc/self/io', 'utf8');
    return { r: Number(t.match(/syscr: (\d+)/)[1]), w: Number(t.match(/syscw: (\d+)/)[1]) };
  };
  for (let r = 0; r < rounds; r++) {
    const c0 = await stat(); const r0 = await redisCpu(); const io0 = io(); const cpu0 = process.cpuUsage();
    const t = performance.now();
    const list = await net.listInstances();
    const ms = performance.now() - t;
    const cpu = process.cpuUsage(cpu0); const io1 = io(); const r1 = await redisCpu(); const c1 = await stat();
    console.log(`N=${n}: ${list.length} listed in ${ms.toFixed(0)} ms, process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms, Redis CPU ${(r1 - r0).toFixed(0)} ms (6 nodes, incl. replication); `
      + `commands per master [${c1.map((x, i) => x - c0[i] - 1).join(' ')}]; syscalls read ${io1.r - io0.r} write ${io1.w - io0.w}`);
  }
  // The limit: the same reads on ioredis' Cluster client (auto-pipelined per node), no mapping.
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    const ids = await admin.zrange('perseus:instances', 0, -1);
    await Promise.all(ids.flatMap((id) => [admin.hgetall(`perseus:instance:${id}`), admin.get(`perseus:heartbeat:${id}`)]));
    console.log(`N=${n}: raw ioredis cluster ZRANGE + HGETALL/GET ${(performance.now() - t).toFixed(0)} ms`);
  }
  await net.close();
} finally {
  admin.disconnect();
  await cluster.stop();
}
