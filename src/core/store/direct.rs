//! Plain connections for bulk reads whose replies [`crate::core::wire::resp`] scans itself.
//!
//! Why: the `redis` crate parses every reply into its `Value` tree and offers no hook for the
//! raw bytes, and a 100,000-entry query spends most of its Rust time there. So range reads
//! (XRANGE / XREVRANGE pages) go over connections of our own: TCP or TLS (rustls, the same
//! roots, CA and insecure rules as the crate), AUTH with the configured user, SELECT of the
//! URL's database, and on a cluster the master that owns the key's slot (from CLUSTER SLOTS).
//!
//! It is only a fast path: anything it cannot do (a Unix socket, a refused connection or
//! AUTH, a MOVED, a reply it does not expect) makes the caller read that page through the
//! crate instead, which stays the source of truth for errors. Only a timeout is final: a
//! server that did not answer within the command timeout would not answer the crate either.

use std::sync::{Arc, Mutex};

use redis::{ConnectionAddr, IntoConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::core::config::{ConnectionConfig, Target};
use crate::core::credentials::Creds;
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

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    io: Box<dyn Io>,
    node: (String, u16),
    /// The rotating credentials it logged in with (`None`: fixed ones), so a pooled
    /// connection of an older rotation is dropped rather than reused.
    creds: Option<Arc<Creds>>,
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
}

impl Direct {
    pub fn new(cfg: &ConnectionConfig) -> Self {
        Direct {
            cfg: cfg.clone(),
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
        let limit = self.cfg.command_timeout;
        match tokio::time::timeout(limit, self.exchange(node, packed)).await {
            Ok(r) => r,
            Err(_) => Err(Miss::Timeout),
        }
    }

    async fn exchange(&self, node: (String, u16), packed: &[u8]) -> Result<Vec<u8>, Miss> {
        let current = self.rotating();
        let pooled = self.idle.lock().ok().and_then(|mut idle| {
            idle.retain(|c| same_creds(&c.creds, &current));
            let i = idle.iter().position(|c| c.node == node)?;
            Some(idle.swap_remove(i))
        });
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect(node).await?,
        };
        let reply = read_reply(&mut conn.io, packed).await?;
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < 4 {
                idle.push(conn);
            }
        }
        Ok(reply)
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
        Ok(Conn { io, node, creds })
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

/// Writes one command and reads exactly one reply.
async fn read_reply(io: &mut Box<dyn Io>, packed: &[u8]) -> Result<Vec<u8>, Miss> {
    io.write_all(packed)
        .await
        .map_err(|e| miss(&e.to_string()))?;
    io.flush().await.map_err(|e| miss(&e.to_string()))?;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut scan = FrameScanner::default();
    loop {
        if buf.capacity() - buf.len() < (1 << 15) {
            buf.reserve(buf.capacity().max(1 << 16));
        }
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|e| miss(&e.to_string()))?;
        if n == 0 {
            return Err(miss("connection closed"));
        }
        match scan.feed(&buf) {
            Ok(Some(len)) if len == buf.len() => return Ok(buf),
            Ok(Some(_)) => return Err(miss("more than one reply")),
            Ok(None) => {}
            Err(e) => return Err(miss(&e.0)),
        }
    }
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
