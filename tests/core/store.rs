//! The store's retry contract under a dropped link, on a standalone server and on the shared
//! cluster. The test cuts exactly the connection(s) that will carry the next command (it marks
//! them with a command nobody else sends, `HSTRLEN`, and `CLIENT KILL`s those by id), so the
//! command under test is the first one on a dead link:
//! - the sweep's light read (`HMGET`, declared [`Kind::Read`]) is sent again and succeeds;
//! - the same `HMGET` declared send-once ([`Kind::WriteOnce`]) fails under the same cut, so
//!   the cut does land under the command and the declared kind is what decides.
//!
//! Who re-sends differs: on a standalone server the store does (its `reads_resent` counter
//! moves); on a cluster the cluster client re-sends a dropped request by itself before the
//! store sees an error, and the send-once connection, whose client never retries, does not.

use perseus_native::core::store::{Command, Kind, Store};

use super::common::*;

/// The cluster is shared by the whole test binary and a cut kills every marked connection on
/// it: tests that mark and cut hold this so one test's cut never lands on another's links.
static CUTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Kills every client connection (on every node) whose last command was `HSTRLEN`.
fn cut_marked(backend: &Backend) -> usize {
    let nodes: Vec<Plain> = match backend {
        Backend::Standalone(s) => vec![s.client()],
        Backend::Cluster(c) => c.urls.iter().map(|u| Plain::new(u)).collect(),
    };
    let mut killed = 0;
    for node in nodes {
        let list: String = node.q(|c| {
            c.arg("CLIENT").arg("LIST").arg("TYPE").arg("normal");
        });
        for line in list.lines().filter(|l| l.contains(" cmd=hstrlen ")) {
            let Some(id) = line
                .split(' ')
                .find_map(|kv| kv.strip_prefix("id="))
                .map(str::to_string)
            else {
                continue;
            };
            let n: i64 = node.q(|c| {
                c.arg("CLIENT").arg("KILL").arg("ID").arg(&id);
            });
            killed += n as usize;
        }
    }
    killed
}

fn hmget(kind: Kind, key: &str) -> Command {
    let mut c = Command::on_key(kind, "HMGET", key);
    c.arg("state").arg("publicIp");
    c
}

/// Marks the connection that carries a `kind` command to `key`, then cuts it.
async fn mark_and_cut(backend: &Backend, store: &Store, kind: Kind, key: &str) {
    let mut mark = Command::on_key(kind, "HSTRLEN", key);
    mark.arg("state");
    // Another command of the store's own (CLIENT SETNAME after connecting) may land on the
    // link between the mark and the cut: mark again until the marked link is found.
    let mut cut = 0;
    for _ in 0..20 {
        let _: i64 = store.query(&mark).await.expect("the marking command runs");
        cut = cut_marked(backend);
        if cut > 0 {
            break;
        }
        tokio::time::sleep(ms(50)).await;
    }
    assert!(cut >= 1, "no marked connection to cut");
    // Let the client see the EOF (it must still not re-send by itself what it was not told to).
    tokio::time::sleep(ms(100)).await;
}

async fn dropped_link_under_the_light_read(t: Topology) {
    let _cuts = CUTS.lock().await;
    let backend = Backend::start(t);
    let r = backend.client();
    let prefix = uniq("st");
    let key = format!("{prefix}:instance:x");
    let _: i64 = r.q(|c| {
        c.arg("HSET").arg(&key).arg("state").arg("running");
    });
    let cfg = Config::from_options(backend.opts(&prefix), None).unwrap();
    let store = Store::connect(&cfg.connection, None).await.unwrap();
    let want = vec![Some("running".to_string()), None];

    // A read: sent again after the cut, and answered.
    mark_and_cut(&backend, &store, Kind::Read, &key).await;
    let before = store.reads_resent();
    let got: Vec<Option<String>> = store
        .query(&hmget(Kind::Read, &key))
        .await
        .unwrap_or_else(|e| panic!("{t:?}: the read failed after a dropped link: {e}"));
    assert_eq!(got, want);
    if matches!(t, Topology::Standalone) {
        assert_eq!(
            store.reads_resent(),
            before + 1,
            "the store re-sent the read"
        );
    }

    // The sweep's own path (several reads at once, as the light read sends them).
    if matches!(t, Topology::Cluster) {
        mark_and_cut(&backend, &store, Kind::Read, &key).await;
        let got = store
            .query_many(vec![hmget(Kind::Read, &key)])
            .await
            .unwrap_or_else(|e| panic!("{t:?}: the sweep's read failed after a dropped link: {e}"));
        assert!(got[0].is_ok(), "{t:?}: {got:?}");
    }

    // The same command declared send-once: not re-sent, so the cut surfaces.
    mark_and_cut(&backend, &store, Kind::WriteOnce, &key).await;
    let before = store.reads_resent();
    let once = store
        .query::<Vec<Option<String>>>(&hmget(Kind::WriteOnce, &key))
        .await;
    assert!(
        once.is_err(),
        "{t:?}: a send-once command survived the cut: {once:?}"
    );
    assert_eq!(
        store.reads_resent(),
        before,
        "a send-once command was re-sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_link_under_the_light_read_is_retried_once_standalone() {
    dropped_link_under_the_light_read(Topology::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_link_under_the_light_read_is_retried_once_cluster() {
    dropped_link_under_the_light_read(Topology::Cluster).await;
}

/// Issue 23 item 4: one retry policy in `query_many`. A read pipeline (sweeps, listings)
/// whose link dropped is sent once more, as a single read is; a command declared send-once
/// inside `query_many` is never re-sent, by us or (on a cluster) by the cluster client: it
/// goes over the send-once connection, so a cut of that connection surfaces.
async fn query_many_under_a_dropped_link(t: Topology) {
    let _cuts = CUTS.lock().await;
    let backend = Backend::start(t);
    let r = backend.client();
    let prefix = uniq("qm");
    let key = format!("{prefix}:instance:x");
    let _: i64 = r.q(|c| {
        c.arg("HSET").arg(&key).arg("state").arg("running");
    });
    let cfg = Config::from_options(backend.opts(&prefix), None).unwrap();
    let store = Store::connect(&cfg.connection, None).await.unwrap();

    // Reads: the pipeline is sent again after the cut, and answered.
    mark_and_cut(&backend, &store, Kind::Read, &key).await;
    let before = store.reads_resent();
    let got = store
        .query_many(vec![hmget(Kind::Read, &key), hmget(Kind::Read, &key)])
        .await
        .unwrap_or_else(|e| panic!("{t:?}: a read pipeline failed after a dropped link: {e}"));
    assert_eq!(got.len(), 2);
    for v in &got {
        let v = v.as_ref().unwrap_or_else(|e| panic!("{t:?}: {e}"));
        let decoded: Vec<Option<String>> = redis::from_redis_value(v.clone()).unwrap();
        assert_eq!(decoded, vec![Some("running".to_string()), None]);
    }
    if matches!(t, Topology::Standalone) {
        assert_eq!(
            store.reads_resent(),
            before + 1,
            "the store re-sent the read pipeline once"
        );
    }

    // Send-once: the cut of the connection that carries it surfaces (never re-sent).
    mark_and_cut(&backend, &store, Kind::WriteOnce, &key).await;
    let before = store.reads_resent();
    let once = store.query_many(vec![hmget(Kind::WriteOnce, &key)]).await;
    let failed = match &once {
        Err(_) => true,
        Ok(v) => v.iter().any(|r| r.is_err()),
    };
    assert!(
        failed,
        "{t:?}: a send-once command in query_many survived the cut (it was re-sent): {once:?}"
    );
    assert_eq!(
        store.reads_resent(),
        before,
        "a send-once command was re-sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_many_resends_reads_once_and_never_send_once_standalone() {
    query_many_under_a_dropped_link(Topology::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_many_resends_reads_once_and_never_send_once_cluster() {
    query_many_under_a_dropped_link(Topology::Cluster).await;
}
