//! Shared helpers for the core tests: throwaway `redis-server` processes, a capturing
//! event sink, a capturing log sink and option builders. Never mocks Redis, never uses 6379.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
pub use std::sync::{Arc, Mutex};

pub use perseus_native::core::config::{Config, LogLevel, PublicIpOption, RawOptions};
pub use perseus_native::core::events::{EventSink, NetEvent};
pub use perseus_native::core::fsm::{Event, State};
pub use perseus_native::core::logging::LogSink;
pub use perseus_native::core::network::Network;

pub use std::collections::{BTreeSet, HashMap};
pub use std::time::{Duration, Instant};

pub use perseus_native::core::activity::{make_query, ActivityInput, Bound};
pub use perseus_native::core::error::Error;
pub use perseus_native::core::ip;

const INSTALL_HINT: &str =
    "redis-server is required by these tests: install it (apt-get install -y redis-server)";

/// A port nothing listens on right now (bind :0, read the port, close).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A throwaway `redis-server` child on a free loopback port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    extra: Vec<String>,
    dir: PathBuf,
}

impl RedisServer {
    /// A server with no password.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra arguments (e.g. `["--requirepass", "pw"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let dir = std::env::temp_dir().join(format!(
            "perseus-core-redis-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).expect("create a temp dir for redis-server");
        // The port may be taken between our probe and the server's bind: try a few.
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            match spawn(port, &extra, &dir) {
                Ok(child) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        extra,
                        dir,
                    }
                }
                Err(e) => last_err = e,
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain client for reading state back (add the password to the URL when needed).
    pub fn client(&self) -> Plain {
        Plain::new(&self.url())
    }

    /// SIGKILL, as a crash: nothing is saved (`--save ""`).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a fresh server on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match spawn(self.port, &self.extra, &self.dir) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() > deadline => {
                    panic!("could not restart redis-server on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(port: u16, extra: &[String], dir: &PathBuf) -> Result<Child, String> {
    let mut cmd = Command::new("redis-server");
    cmd.arg("--port")
        .arg(port.to_string())
        .arg("--bind")
        .arg("127.0.0.1")
        .arg("--save")
        .arg("")
        .arg("--appendonly")
        .arg("no")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
        Err(e) => panic!("{INSTALL_HINT} (spawning it failed: {e})"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "redis-server exited early on port {port}: {status}"
            ));
        }
        if answers_ping(port) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server did not answer PING on port {port} within 5 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Raw `PING`: any reply (`+PONG`, or `-NOAUTH` with requirepass) means the server is up.
fn answers_ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
}

fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A unique name for ids and prefixes: `<base>-<pid>-<n>`.
pub fn uniq(base: &str) -> String {
    format!("{base}-{}-{}", std::process::id(), unique())
}

/// A plain synchronous `redis` client: a fresh connection per call, so it survives restarts.
/// On a cluster it follows the slots (`CLUSTER SLOTS`, MOVED) like any cluster client.
pub struct Plain {
    client: PlainClient,
}

// A few per test: the size of the bigger variant does not matter.
#[allow(clippy::large_enum_variant)]
enum PlainClient {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl Plain {
    pub fn new(url: &str) -> Self {
        Plain {
            client: PlainClient::Single(redis::Client::open(url).expect("plain client URL")),
        }
    }

    /// A client of the cluster seeded by `nodes`.
    pub fn cluster(nodes: &[String]) -> Self {
        let client = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(|s| s.as_str()))
            .connection_timeout(Duration::from_secs(2))
            .build()
            .expect("plain cluster client");
        Plain {
            client: PlainClient::Cluster(client),
        }
    }

    /// A standalone connection (pipelines across keys are standalone-only).
    pub fn con(&self) -> redis::Connection {
        match &self.client {
            PlainClient::Single(c) => c
                .get_connection_with_timeout(Duration::from_secs(2))
                .expect("plain client connects"),
            PlainClient::Cluster(_) => panic!("Plain::con is for standalone servers"),
        }
    }

    /// Runs one command built by `build`.
    pub fn q<T: redis::FromRedisValue>(&self, build: impl FnOnce(&mut redis::Cmd)) -> T {
        let mut cmd = redis::Cmd::new();
        build(&mut cmd);
        match &self.client {
            PlainClient::Single(_) => cmd.query(&mut self.con()),
            PlainClient::Cluster(c) => {
                cmd.query(&mut c.get_connection().expect("cluster connects"))
            }
        }
        .expect("plain client command")
    }

    pub fn exists(&self, key: &str) -> bool {
        self.q::<i64>(|c| {
            c.arg("EXISTS").arg(key);
        }) == 1
    }

    pub fn pttl(&self, key: &str) -> i64 {
        self.q(|c| {
            c.arg("PTTL").arg(key);
        })
    }

    pub fn hgetall(&self, key: &str) -> std::collections::HashMap<String, String> {
        self.q(|c| {
            c.arg("HGETALL").arg(key);
        })
    }

    pub fn hget(&self, key: &str, field: &str) -> Option<String> {
        self.q(|c| {
            c.arg("HGET").arg(key).arg(field);
        })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.q(|c| {
            c.arg("GET").arg(key);
        })
    }

    pub fn xlen(&self, key: &str) -> u64 {
        self.q(|c| {
            c.arg("XLEN").arg(key);
        })
    }

    /// The whole stream as `(id, [(field, value)])`, values lossy UTF-8.
    pub fn xrange(&self, key: &str) -> Vec<(String, Vec<(String, String)>)> {
        let v: redis::Value = self.q(|c| {
            c.arg("XRANGE").arg(key).arg("-").arg("+");
        });
        let redis::Value::Array(items) = v else {
            return vec![];
        };
        items
            .into_iter()
            .filter_map(|item| {
                let redis::Value::Array(pair) = item else {
                    return None;
                };
                let id = bulk_text(&pair[0])?;
                let redis::Value::Array(flat) = &pair[1] else {
                    return Some((id, vec![]));
                };
                let fields = flat
                    .chunks_exact(2)
                    .filter_map(|p| Some((bulk_text(&p[0])?, bulk_text(&p[1])?)))
                    .collect();
                Some((id, fields))
            })
            .collect()
    }
}

fn bulk_text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A field of a raw stream entry.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The two topologies every "standalone and cluster" test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Topology {
    Standalone,
    Cluster,
}

/// Where one test's networks live: its own throwaway server, or the test binary's shared
/// cluster (tests on it keep apart by key prefix). Dropping it stops a standalone server.
pub enum Backend {
    Standalone(RedisServer),
    Cluster(&'static Cluster),
}

impl Backend {
    /// A fresh standalone server, or the shared cluster (started on first use).
    pub fn start(t: Topology) -> Self {
        match t {
            Topology::Standalone => Backend::Standalone(RedisServer::start()),
            Topology::Cluster => Backend::Cluster(Cluster::shared()),
        }
    }

    /// Short-timing options ([`opts`]) aimed at this backend.
    pub fn opts(&self, prefix: &str) -> RawOptions {
        match self {
            Backend::Standalone(s) => opts(&s.url(), prefix),
            Backend::Cluster(c) => RawOptions {
                redis_url: None,
                cluster_nodes: Some(c.urls.clone()),
                ..opts("redis://unused", prefix)
            },
        }
    }

    /// A plain client for reading state back.
    pub fn client(&self) -> Plain {
        match self {
            Backend::Standalone(s) => s.client(),
            Backend::Cluster(c) => Plain::cluster(&c.urls),
        }
    }

    /// The target as one argument for a child process: a URL, or `cluster:` + comma-separated
    /// seed URLs (see `fault_member.rs`).
    pub fn child_arg(&self) -> String {
        match self {
            Backend::Standalone(s) => s.url(),
            Backend::Cluster(c) => format!("cluster:{}", c.urls.join(",")),
        }
    }
}

/// A throwaway 6-node OSS cluster (3 masters + 3 replicas) on free loopback ports, started
/// once per test binary by `node scripts/redis.mjs cluster --until-stdin-closes` (the same
/// helper the node suites use). That process holds the servers; we hold its stdin, and when
/// this test binary exits, however it exits (a failed test, a panic, SIGKILL), the pipe
/// closes and it kills the servers and removes their temp dirs.
pub struct Cluster {
    /// `redis://127.0.0.1:<port>` of every node.
    pub urls: Vec<String>,
    _helper: Mutex<(Child, std::process::ChildStdin)>,
}

impl Cluster {
    /// The binary's cluster, started by the first caller (others wait for it).
    pub fn shared() -> &'static Cluster {
        static CLUSTER: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
        CLUSTER.get_or_init(Cluster::start)
    }

    /// A cluster of the caller's own (for tests that kill its nodes); stopped on drop.
    pub fn private() -> Cluster {
        Cluster::start()
    }

    fn start() -> Cluster {
        use std::io::BufRead;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/redis.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .args(["cluster", "--until-stdin-closes"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run node {script}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let urls = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(list) = line.strip_prefix("REDIS_CLUSTER_NODES=") {
                        break list.split(',').map(str::to_string).collect::<Vec<_>>();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("{INSTALL_HINT}: the cluster helper gave no node list ({status:?})");
                }
            }
        };
        Cluster {
            urls,
            _helper: Mutex::new((child, stdin)),
        }
    }
}

/// Records every event; watchdog pings get the default answer (at once: no event loop here).
/// As a tracer, `traced` answers `trace_all` (default false: nobody traces), counts the
/// questions and records the traces.
#[derive(Default)]
pub struct Capture {
    events: Mutex<Vec<NetEvent>>,
    pub trace_all: std::sync::atomic::AtomicBool,
    pub traced_asked: AtomicU64,
    pub traces: Mutex<Vec<perseus_native::core::trace::Trace>>,
}

impl EventSink for Capture {
    fn emit(&self, event: NetEvent) {
        self.events.lock().unwrap().push(event);
    }
}

impl perseus_native::core::trace::Tracer for Capture {
    fn traced(&self, _kind: perseus_native::core::trace::TraceKind) -> bool {
        self.traced_asked.fetch_add(1, Ordering::Relaxed);
        self.trace_all.load(Ordering::Relaxed)
    }
    fn trace(&self, trace: perseus_native::core::trace::Trace) {
        self.traces.lock().unwrap().push(trace);
    }
}

impl Capture {
    pub fn events(&self) -> Vec<NetEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// `(from, event, to)` of every StateChange, in order.
    pub fn transitions(&self) -> Vec<(State, Event, State)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                NetEvent::StateChange(c) => Some((c.from, c.event, c.to)),
                _ => None,
            })
            .collect()
    }

    /// Polls until `pred` holds over the events so far, or `timeout` passes.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&[NetEvent]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.events.lock().unwrap()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Polls `pred` every 10 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records every log record as `(level, JSON fields, message)`.
#[derive(Default)]
pub struct Logs(pub Mutex<Vec<(LogLevel, String, String)>>);

impl LogSink for Logs {
    fn log(
        &self,
        level: LogLevel,
        fields: serde_json::Map<String, serde_json::Value>,
        msg: String,
    ) {
        let fields = serde_json::Value::Object(fields).to_string();
        self.0.lock().unwrap().push((level, fields, msg));
    }
}

/// Short timings, no public-IP detection, a unique instance id.
pub fn opts(url: &str, prefix: &str) -> RawOptions {
    RawOptions {
        redis_url: Some(url.to_string()),
        key_prefix: Some(prefix.to_string()),
        exchange_id: Some(7.0),
        exchange_name: Some("coinbase".into()),
        version: Some("1.2.3".into()),
        hostname: Some("test-host".into()),
        instance_id: Some(uniq("inst")),
        public_ip: Some(PublicIpOption::Disabled),
        heartbeat_interval_ms: Some(100.0),
        heartbeat_ttl_ms: Some(400.0),
        connect_timeout_ms: Some(1000.0),
        command_timeout_ms: Some(1000.0),
        dead_instance_ttl_ms: Some(60_000.0),
        log_level: Some("warn".into()),
        ..Default::default()
    }
}

/// A network over `o` with a fresh capturing sink (which answers its watchdog).
pub fn network(o: RawOptions) -> (Network, Arc<Capture>) {
    network_with_logs(o, None)
}

pub fn network_with_logs(o: RawOptions, logs: Option<Arc<Logs>>) -> (Network, Arc<Capture>) {
    let cfg = Config::from_options(o, None).expect("valid test options");
    let cap = Arc::new(Capture::default());
    let log_sink: Option<Arc<dyn LogSink>> = logs.map(|l| l as Arc<dyn LogSink>);
    let net = Network::new(cfg, cap.clone(), log_sink);
    (net, cap)
}

pub const TTL_MS: i64 = 400;
pub const DEAD_TTL_MS: i64 = 60_000;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn now_ms() -> u64 {
    perseus_native::core::clock::now_ms()
}

/// `(event, fromState, toState)` of every entry of a raw stream read.
pub fn stream_events(
    entries: &[(String, Vec<(String, String)>)],
    instance_id: &str,
) -> Vec<(String, Option<String>, Option<String>)> {
    entries
        .iter()
        .filter(|(_, f)| field(f, "instanceId") == Some(instance_id))
        .map(|(_, f)| {
            (
                field(f, "event").unwrap_or("").to_string(),
                field(f, "fromState").map(str::to_string),
                field(f, "toState").map(str::to_string),
            )
        })
        .collect()
}

pub fn ev(
    e: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> (String, Option<String>, Option<String>) {
    (e.into(), from.map(Into::into), to.map(Into::into))
}

pub fn is_parsable_iso(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}
