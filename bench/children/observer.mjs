// Out-of-process observer: records, with its own clock, every keyspace 'set' event on keys
// matching argv[3] (Redis must run with notify-keyspace-events including K and $).
// argv[2] = redis URL. Messages in: { type: 'dump' } → { type: 'events', events: [{ key, t }] }.
import Redis from 'ioredis';

const [url, pattern] = process.argv.slice(2);
const sub = new Redis(url);
const events = [];
const channelPrefix = '__keyspace@0__:';
sub.on('pmessage', (_p, channel, message) => {
  if (message === 'set') events.push({ key: channel.slice(channelPrefix.length), t: Date.now() });
});
await sub.psubscribe(`${channelPrefix}${pattern}`);
process.send({ type: 'ready' });
process.on('message', (msg) => {
  if (msg.type === 'dump') process.send({ type: 'events', events: events.splice(0) });
  if (msg.type === 'stop') { sub.disconnect(); process.disconnect(); }
});
