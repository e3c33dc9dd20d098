//! Plain connections for bulk reads whose replies [`crate::core::wire::resp`] scans itself.
//!
//! Why: the `redis` crate parses every reply into its `Value` tree and offers no hook for the
//! raw bytes, and a 100,000-entry query spends most of its Rust time there. So range reads
//! (XRANGE / XREVRANGE pages) go over connections of our own: TCP or TLS (rustls, the same
//! roots, CA and insecure rules as the crate), AUTH with the configured user, SELECT of the
//! URL's database, and on a cluster the master that owns the key's slot (from CLUSTER SLOTS).
//!
//! Writes that must run at most once (`XADD *`, issue 21) go over them too, on a standalone
//! server with fixed credentials only ([`Direct::write_once`]; with a `credentials` provider
//! they stay on the crate's connection, which re-authenticates in place): packed into one buffer, their replies read without the
//! crate's `Value` tree. There the fallback rule is narrower: only a pipeline that was not
//! sent (no connection could be made or logged in) goes through the crate instead; once any
//! byte is written, a failure fails the pipeline (each command may or may not have run), as
//! the crate's send-once path does. A pooled connection the server closed while it sat idle
//! (a `CLIENT KILL`, the server's `timeout`) is seen before anything is written to it and
//! replaced, so it never fails a write the server would have taken.
//!
//! It is only a fast path for reads: anything it cannot do (a Unix socket, a refused connection or
//! AUTH, a MOVED, a reply it does not expect) makes the caller read that page through the
//! crate instead, which stays the source of truth for errors. A timeout is final on a fresh
//! connection (a server that did not answer within the command timeout would not answer the
//! crate either), but not on a pooled one: a NAT or a load balancer may have dropped an idle
//! link silently, so a pooled connection that times out or was reset is dropped and the page
//! is read once more on a fresh one (a range read is idempotent). Pooled connections idle for
//! longer than [`IDLE_BOUND`] are dropped rather than reused, and every connection has TCP
//! keepalive on. Nothing here touches the shared connection status: a direct connection's
//! failure says nothing about the link the network's `connection` events describe.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::core::config::{ConnectionConfig, Target};
use crate::core::credentials::Creds;
use crate::core::wire::pipeline::{Simple, SimpleReplies};
use crate::core::wire::resp::FrameScanner;
use crate::core::wire::slots::{slot_of, SlotTable};
use crate::core::wire::tls;

/// Why a direct read did not give a reply.
#[derive(Debug)]
pub enum Miss {
    /// No answer within the command timeout: final (the caller reports a timeout).
    Timeout,
    /// Anything else: the caller reads through the crate.
    Fallback(String),
}

/// How long a pooled connection may sit idle and still be reused. Middleboxes commonly drop
/// idle TCP flows after a few minutes; 30 s stays well inside that and inside the first
/// keepalive probe ([`KEEPALIVE_TIME`] + one interval).
pub const IDLE_BOUND: Duration = Duration::from_secs(30);
/// How long a timed-out write pipeline's connection stays open to finish sending it and read
/// its late replies, before it is closed (then the server may run only a part of it).
const LATE_REPLIES: Duration = Duration::from_secs(120);
/// TCP keepalive on every direct connection: first probe after this much idle time.
const KEEPALIVE_TIME: Duration = Duration::from_secs(15);
/// Between keepalive probes (where the platform lets us set it).
#[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// The idle bound can be shortened for tests with this environment variable (milliseconds),
/// read when a network's store is made. Undocumented on purpose: only the tests set it.
const IDLE_BOUND_ENV: &str = "PERSEUS_DIRECT_IDLE_MS";

fn idle_bound() -> Duration {
    std::env::var(IDLE_BOUND_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(IDLE_BOUND, Duration::from_millis)
}

/// Why a pipeline of writes over a direct connection has no replies.
#[derive(Debug)]
pub enum WriteMiss {
    /// Nothing was sent (a cluster, a Unix socket, a refused connection or login): the caller
    /// sends it through the crate instead.
    NotSent(String),
    /// Not every reply came within the limit: each command may or may not have run.
    Timeout,
    /// The link failed, or answered garbage, after the pipeline was written: each command may
    /// or may not have run.
    Link(String),
}

/// Why one exchange on a connection failed.
enum Broken {
    /// The link failed (reset, closed, write error): another connection may do better.
    Link(String),
    /// The reply is not what the scanner accepts: the crate reads the page instead.
    Proto(String),
}

impl From<Broken> for Miss {
    fn from(b: Broken) -> Self {
        match b {
            Broken::Link(why) | Broken::Proto(why) => Miss::Fallback(why),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    io: Box<dyn Io>,
    node: (String, u16),
    /// The rotating credentials it logged in with (`None`: fixed ones), so a pooled
    /// connection of an older rotation is dropped rather than reused.
    creds: Option<Arc<Creds>>,
    /// When it went back to the pool.
    idle_since: Instant,
}

/// Where and how to connect.
#[derive(Clone)]
struct Plan {
    tls: Option<bool>, // Some(insecure) for TLS
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

/// A small pool of direct connections (one per concurrent page read), made on demand.
pub struct Direct {
    cfg: ConnectionConfig,
    idle: Mutex<Vec<Conn>>,
    tls: Mutex<Option<Arc<rustls::ClientConfig>>>,
    /// [`IDLE_BOUND`], or the test override.
    idle_bound: Duration,
}

impl Direct {
    pub fn new(cfg: &ConnectionConfig) -> Self {
        Direct {
            cfg: cfg.clone(),
            idle_bound: idle_bound(),
            idle: Mutex::new(Vec::new()),
            tls: Mutex::new(None),
        }
    }

    /// Sends one packed command about `key` and returns its whole reply, undecoded.
    /// `slot_map` gives the store's one cached slot table when a cluster map is needed.
    pub async fn request<F, Fut>(
        &self,
        key: &str,
        packed: &[u8],
        slot_map: F,
    ) -> Result<Vec<u8>, Miss>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<Arc<SlotTable>>>,
    {
        let node = match &self.cfg.target {
            Target::Standalone(url) => {
                let (host, port, _) = self.standalone(url)?;
                (host, port)
            }
            Target::Cluster(_) => {
                let table = slot_map().await.ok_or_else(|| miss("no slot map"))?;
                let m = table
                    .master_of(slot_of(key.as_bytes()))
                    .ok_or_else(|| miss("slot not covered"))?;
                let (host, port) = table.address(m);
                if host.is_empty() {
                    return Err(miss("no master address"));
                }
                (host.clone(), *port)
            }
        };
        self.exchange(node, packed, self.cfg.command_timeout).await
    }

    /// One request: on a pooled connection if a fresh-enough one is idle, else (or when the
    /// pooled one timed out or broke) on a new one. Each attempt gets the whole `limit`.
    async fn exchange(
        &self,
        node: (String, u16),
        packed: &[u8],
        limit: Duration,
    ) -> Result<Vec<u8>, Miss> {
        if let Some(mut conn) = self.pooled(&node) {
            match tokio::time::timeout(limit, read_reply(&mut conn.io, packed)).await {
                Ok(Ok(reply)) => {
                    self.put_back(conn);
                    return Ok(reply);
                }
                Ok(Err(Broken::Proto(why))) => return Err(Miss::Fallback(why)),
                Ok(Err(Broken::Link(why))) => {
                    tracing::debug!(
                        "a pooled direct connection broke ({why}); read again on a new one"
                    );
                }
                Err(_) => {
                    tracing::debug!(
                        "a pooled direct connection timed out; read again on a new one"
                    );
                }
            }
            // A link dropped silently is rarely alone: the other idle ones to that node go too.
            if let Ok(mut idle) = self.idle.lock() {
                idle.retain(|c| c.node != node);
            }
        }
        let fresh = async {
            let mut conn = self.connect(node).await?;
            let reply = read_reply(&mut conn.io, packed).await?;
            Ok::<_, Miss>((conn, reply))
        };
        match tokio::time::timeout(limit, fresh).await {
            Ok(Ok((conn, reply))) => {
                self.put_back(conn);
                Ok(reply)
            }
            Ok(Err(miss)) => Err(miss),
            Err(_) => Err(Miss::Timeout),
        }
    }

    /// An idle connection to `node` logged in with the current credentials, idle for at most
    /// the bound, and not closed by the server meanwhile; `None` when there is none.
    fn pooled(&self, node: &(String, u16)) -> Option<Conn> {
        let current = self.rotating();
        let bound = self.idle_bound;
        let mut idle = self.idle.lock().ok()?;
        idle.retain_mut(|c| {
            same_creds(&c.creds, &current)
                && c.idle_since.elapsed() <= bound
                && !closed_while_idle(&mut c.io)
        });
        let i = idle.iter().position(|c| &c.node == node)?;
        Some(idle.swap_remove(i))
    }

    /// Standalone only: sends `packed` (`n` commands that each answer with a bulk string or
    /// an error, e.g. `XADD *`) once, on a pooled or new connection, and reads their `n`
    /// replies within `limit`. Never sends it twice; see [`WriteMiss`] for what a failure
    /// says about what ran.
    pub async fn write_once(
        &self,
        packed: Vec<u8>,
        n: usize,
        limit: Duration,
    ) -> Result<Vec<Simple>, WriteMiss> {
        let Target::Standalone(url) = &self.cfg.target else {
            return Err(WriteMiss::NotSent("a cluster".into()));
        };
        if self.cfg.credentials.is_some() {
            // Rotating credentials: the crate's connection re-authenticates in place and is
            // named, which the credentials contract describes; ours would be made anew.
            return Err(WriteMiss::NotSent("rotating credentials".into()));
        }
        let node = match self.standalone(url) {
            Ok((host, port, _)) => (host, port),
            Err(Miss::Fallback(why)) => return Err(WriteMiss::NotSent(why)),
            Err(Miss::Timeout) => return Err(WriteMiss::Timeout),
        };
        let deadline = tokio::time::Instant::now() + limit;
        let mut conn = match self.pooled(&node) {
            Some(c) => c,
            None => match tokio::time::timeout_at(deadline, self.connect(node)).await {
                Ok(Ok(c)) => c,
                Ok(Err(Miss::Fallback(why))) => return Err(WriteMiss::NotSent(why)),
                // Nothing was sent, but the server is not answering: the crate would wait
                // as long again.
                Ok(Err(Miss::Timeout)) | Err(_) => return Err(WriteMiss::Timeout),
            },
        };
        // Its own task, which outlives a timeout: it goes on writing the whole pipeline and
        // reading (and dropping) its replies, so a server that was only slow runs all of it,
        // never a part cut off by a closed socket, as over the crate's connection.
        let exchange = tokio::spawn(async move {
            let done =
                tokio::time::timeout(LATE_REPLIES, write_read(&mut conn.io, &packed, n)).await;
            (conn, done)
        });
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok((conn, Ok(Ok(replies))))) => {
                self.put_back(conn);
                Ok(replies)
            }
            Ok(Ok((_, Ok(Err(why))))) => Err(WriteMiss::Link(why)),
            Ok(Ok((_, Err(_)))) | Err(_) => Err(WriteMiss::Timeout),
            Ok(Err(e)) => Err(WriteMiss::Link(format!("the write task failed: {e}"))),
        }
    }

    /// Returns a connection to the pool (at most 4 idle ones are kept).
    fn put_back(&self, mut conn: Conn) {
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < 4 {
                idle.push(conn);
            }
        }
    }

    fn standalone(&self, url: &str) -> Result<(String, u16, Plan), Miss> {
        let info = url
            .into_connection_info()
            .map_err(|e| miss(&e.to_string()))?;
        let r = info.redis_settings();
        let plan = Plan {
            tls: None,
            username: self
                .cfg
                .username
                .clone()
                .or_else(|| r.username().map(str::to_string)),
            password: self
                .cfg
                .password
                .clone()
                .or_else(|| r.password().map(str::to_string)),
            db: r.db(),
        };
        match info.addr() {
            ConnectionAddr::Tcp(h, p) => Ok((h.clone(), *p, plan)),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => Ok((
                host.clone(),
                *port,
                Plan {
                    tls: Some(*insecure || self.cfg.tls_insecure),
                    ..plan
                },
            )),
            _ => Err(miss("not a TCP address")),
        }
    }

    fn plan(&self) -> Result<Plan, Miss> {
        match &self.cfg.target {
            Target::Standalone(url) => self.standalone(url).map(|(_, _, p)| p),
            Target::Cluster(nodes) => {
                let first = nodes.first().ok_or_else(|| miss("no nodes"))?;
                let mut plan = self.standalone(first)?.2;
                plan.db = 0;
                Ok(plan)
            }
        }
    }

    /// The newest rotating credentials, when the network has a `credentials` provider.
    fn rotating(&self) -> Option<Arc<Creds>> {
        self.cfg.credentials.as_ref().and_then(|c| c.current())
    }

    async fn connect(&self, node: (String, u16)) -> Result<Conn, Miss> {
        let mut plan = self.plan()?;
        let creds = self.rotating();
        if let Some(c) = &creds {
            // A provider overrides the fixed username/password, as for every connection.
            plan.username = c.username.clone();
            plan.password = Some(c.password.clone());
        }
        let tcp = TcpStream::connect((node.0.as_str(), node.1))
            .await
            .map_err(|e| miss(&e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        set_keepalive(&tcp);
        let mut io: Box<dyn Io> = match plan.tls {
            None => Box::new(tcp),
            Some(insecure) => {
                let config = self.tls_config(insecure)?;
                let name = rustls::pki_types::ServerName::try_from(node.0.clone())
                    .map_err(|e| miss(&e.to_string()))?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| miss(&e.to_string()))?;
                Box::new(stream)
            }
        };
        let mut hello = Vec::new();
        if let Some(pw) = &plan.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(u) = &plan.username {
                auth.arg(u);
            }
            auth.arg(pw);
            hello.push(auth);
        }
        if plan.db != 0 {
            let mut select = redis::cmd("SELECT");
            select.arg(plan.db);
            hello.push(select);
        }
        for cmd in hello {
            let reply = read_reply(&mut io, &cmd.get_packed_command()).await?;
            if !reply.starts_with(b"+OK") {
                return Err(miss("AUTH or SELECT refused"));
            }
        }
        Ok(Conn {
            io,
            node,
            creds,
            idle_since: Instant::now(),
        })
    }

    fn tls_config(&self, insecure: bool) -> Result<Arc<rustls::ClientConfig>, Miss> {
        let mut cached = self.tls.lock().map_err(|_| miss("poisoned"))?;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let config =
            tls::client_config(insecure, self.cfg.tls_ca_cert.as_deref()).map_err(|e| miss(&e))?;
        *cached = Some(config.clone());
        Ok(config)
    }
}

fn miss(why: &str) -> Miss {
    Miss::Fallback(why.to_string())
}

/// TCP keepalive, so the kernel finds a dead idle link (and a middlebox sees traffic).
fn set_keepalive(tcp: &TcpStream) {
    let ka = socket2::TcpKeepalive::new().with_time(KEEPALIVE_TIME);
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let ka = ka.with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka) {
        tracing::debug!("TCP keepalive not set on a direct connection: {e}");
    }
}

/// Writes one command and reads exactly one reply.
async fn read_reply(io: &mut Box<dyn Io>, packed: &[u8]) -> Result<Vec<u8>, Broken> {
    let link = |e: std::io::Error| Broken::Link(e.to_string());
    io.write_all(packed).await.map_err(link)?;
    io.flush().await.map_err(link)?;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut scan = FrameScanner::default();
    loop {
        if buf.capacity() - buf.len() < (1 << 15) {
            buf.reserve(buf.capacity().max(1 << 16));
        }
        let n = io.read_buf(&mut buf).await.map_err(link)?;
        if n == 0 {
            return Err(Broken::Link("connection closed".into()));
        }
        match scan.feed(&buf) {
            Ok(Some(len)) if len == buf.len() => return Ok(buf),
            Ok(Some(_)) => return Err(Broken::Proto("more than one reply".into())),
            Ok(None) => {}
            Err(e) => return Err(Broken::Proto(e.0)),
        }
    }
}

/// Whether the server closed (or wrote to) an idle connection: one non-blocking read that
/// finds the end of the stream, an error or bytes nobody asked for. Such a connection must
/// not carry a write that may not be sent twice: it would fail although nothing ran.
fn closed_while_idle(io: &mut Box<dyn Io>) -> bool {
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(io)
        .poll_read(&mut cx, &mut buf)
        .is_ready()
}

/// Writes a pipeline of `n` commands and reads exactly their `n` replies.
async fn write_read(io: &mut Box<dyn Io>, packed: &[u8], n: usize) -> Result<Vec<Simple>, String> {
    io.write_all(packed).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())?;
    let mut buf: Vec<u8> = Vec::with_capacity((n * 24).max(1 << 12));
    let mut replies = SimpleReplies::default();
    while replies.done.len() < n {
        if buf.capacity() - buf.len() < (1 << 12) {
            buf.reserve(buf.capacity().max(1 << 12));
        }
        if io.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
            return Err("connection closed".into());
        }
        replies
            .feed(&buf)
            .map_err(|e| format!("unexpected reply: {}", e.0))?;
    }
    if replies.done.len() > n || replies.consumed() != buf.len() {
        return Err("more replies than commands".into());
    }
    Ok(replies.done)
}

/// Whether two connections logged in with the same rotating credentials (by identity: the
/// cell publishes a new `Arc` on each rotation).
fn same_creds(a: &Option<Arc<Creds>>, b: &Option<Arc<Creds>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}
