// The dashboard server of bench/dashboard.mjs, in its own process so its CPU is its own:
// a never-started network + createDashboard on a loopback port. Prints {"port"} once listening;
// answers each stdin line "cpu" with {"cpu": process.cpuUsage(), "at": ms}.
import http from 'node:http';
import readline from 'node:readline';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { PerseusNetwork } = require('../../index.js');
const { createDashboard } = require('../../dashboard/index.js');

const net = new PerseusNetwork({ redisUrl: process.argv[2], exchangeId: 0, exchangeName: 'bench', publicIp: false, logLevel: 'silent' });
const dash = createDashboard(net, { heartbeatTtlMs: 10_000 });
const server = http.createServer(dash);
server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'cpu') process.stdout.write(`${JSON.stringify({ cpu: process.cpuUsage(), at: performance.now(), stats: dash.stats() })}\n`);
  if (line.trim() === 'exit') { dash.close(); server.close(); net.close().then(() => process.exit(0)); }
});
