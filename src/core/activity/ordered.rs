//! One network's ordered append queue: the `logActivity` batches of its JS thread, drained by
//! at most one task at a time, in the order they were submitted.
//!
//! Why: when each flush was its own runtime task, two flushes of consecutive ticks raced on a
//! two-thread runtime and a later tick's entries could reach Redis first (76 IDs out of 3,000
//! calls in the drill). Here a flush only queues its batch; whoever finds no drainer running
//! starts one, and that one drainer sends chunk after chunk, each after the previous one's
//! replies are in, so stream IDs increase in call order across ticks.
//!
//! The drainer also bounds memory (issue 21's backpressure): it takes at most [`CHUNK_ENTRIES`]
//! entries (or about [`CHUNK_BYTES`] of input) per pipeline, from one batch or several queued
//! ones, and hands each batch its results chunk by chunk, so a tick of a million calls is sent
//! and settled as ~250 bounded pipelines instead of one million-command pipeline.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::entry::ActivityInput;
use crate::core::error::Result;

/// Most entries in one pipeline.
pub const CHUNK_ENTRIES: usize = 4096;
/// About the most input bytes in one pipeline (a chunk always takes at least one entry).
pub const CHUNK_BYTES: usize = 4 << 20;

/// Receives a batch's results, in call order, possibly in several pieces (one per chunk the
/// batch was part of). Called on a runtime thread; must not block.
pub trait Sink: Send + Sync {
    fn deliver(&self, results: Vec<Result<String>>);
}

/// One chunk: the inputs to send, and which sink gets how many of their results, in order.
type Chunk = (Vec<ActivityInput>, Vec<(Arc<dyn Sink>, usize)>);

/// One flush's calls of one network, in call order.
struct Batch {
    inputs: VecDeque<ActivityInput>,
    sink: Arc<dyn Sink>,
}

/// What the queue holds: batches, and markers that fire once everything before them is sent
/// and answered ([`Ordered::barrier`]).
enum Item {
    Batch(Batch),
    Marker(tokio::sync::oneshot::Sender<()>),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Item>,
    /// A drainer is running (it owns the queue's front until it finds the queue empty).
    draining: bool,
}

/// The queue. Cheap to share (`Arc`); one per network.
#[derive(Default)]
pub struct Ordered {
    state: Mutex<State>,
}

/// The approximate size of an input on the wire, for the byte budget.
fn input_bytes(i: &ActivityInput) -> usize {
    64 + i.event.len()
        + i.reason.as_ref().map_or(0, String::len)
        + i.fields
            .iter()
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum::<usize>()
}

impl Ordered {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one flush's inputs (already validated). Returns `true` when no drainer runs: the
    /// caller must then run [`Ordered::drain`] (on the runtime), which it now owns.
    pub fn submit(&self, inputs: Vec<ActivityInput>, sink: Arc<dyn Sink>) -> bool {
        if inputs.is_empty() {
            sink.deliver(Vec::new());
            return false;
        }
        let mut st = self.state();
        st.queue.push_back(Item::Batch(Batch {
            inputs: inputs.into(),
            sink,
        }));
        if st.draining {
            false
        } else {
            st.draining = true;
            true
        }
    }

    /// Resolves once every batch queued before this call has been sent and answered (at once
    /// when nothing is queued), so a lifecycle step called after `logActivity` writes after
    /// it. `None`: nothing to wait for.
    pub fn barrier(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let mut st = self.state();
        if !st.draining {
            return None;
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        st.queue.push_back(Item::Marker(done));
        Some(wait)
    }

    /// Takes the next chunk: up to [`CHUNK_ENTRIES`] / [`CHUNK_BYTES`] from the front batches,
    /// and who gets how many of its results. `None` (and no drainer any more) when empty.
    fn next_chunk(&self) -> Option<Chunk> {
        let mut st = self.state();
        let mut inputs = Vec::new();
        let mut owners: Vec<(Arc<dyn Sink>, usize)> = Vec::new();
        let mut bytes = 0;
        while inputs.len() < CHUNK_ENTRIES {
            let front = match st.queue.front_mut() {
                None => break,
                Some(Item::Marker(_)) if inputs.is_empty() => {
                    // Everything before it was sent and answered (the previous chunk).
                    if let Some(Item::Marker(done)) = st.queue.pop_front() {
                        let _ = done.send(());
                    }
                    continue;
                }
                // The chunk ends here: the marker fires once its replies are in.
                Some(Item::Marker(_)) => break,
                Some(Item::Batch(b)) => b,
            };
            let mut taken = 0;
            while inputs.len() < CHUNK_ENTRIES {
                let Some(size) = front.inputs.front().map(input_bytes) else {
                    break;
                };
                if !inputs.is_empty() && bytes + size > CHUNK_BYTES {
                    break;
                }
                bytes += size;
                inputs.extend(front.inputs.pop_front());
                taken += 1;
            }
            if taken > 0 {
                owners.push((front.sink.clone(), taken));
            }
            if front.inputs.is_empty() {
                st.queue.pop_front();
            } else {
                break; // the chunk is full
            }
        }
        if inputs.is_empty() {
            st.draining = false;
            None
        } else {
            Some((inputs, owners))
        }
    }

    /// Sends every queued chunk with `send` (which returns one result per input, in order),
    /// one at a time, until the queue is empty. Only the caller that [`Ordered::submit`] told
    /// to drain runs this.
    pub async fn drain<F, Fut>(self: Arc<Self>, mut send: F)
    where
        F: FnMut(Vec<ActivityInput>) -> Fut,
        Fut: Future<Output = Vec<Result<String>>>,
    {
        while let Some((inputs, owners)) = self.next_chunk() {
            let n = inputs.len();
            let mut results = send(inputs).await;
            // A sender that returned too few results is a bug; no caller may hang on it.
            results.resize_with(n, || {
                Err(crate::core::error::Error::Redis(
                    "internal error (a bug): no result for an append".into(),
                ))
            });
            let mut results = results.into_iter();
            for (sink, count) in owners {
                sink.deliver(results.by_ref().take(count).collect());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Vec<usize>>);
    impl Sink for Collect {
        fn deliver(&self, results: Vec<Result<String>>) {
            let mut got = self.0.lock().unwrap();
            got.extend(
                results
                    .into_iter()
                    .map(|r| r.unwrap().parse::<usize>().unwrap()),
            );
        }
    }

    fn inputs(range: std::ops::Range<usize>) -> Vec<ActivityInput> {
        range
            .map(|i| ActivityInput {
                event: format!("E{i}"),
                ..Default::default()
            })
            .collect()
    }

    #[tokio::test]
    async fn chunks_keep_submission_order_and_respect_the_cap() {
        let q = Arc::new(Ordered::default());
        let a = Arc::new(Collect(Mutex::new(Vec::new())));
        let b = Arc::new(Collect(Mutex::new(Vec::new())));
        assert!(q.submit(inputs(0..10_000), a.clone()));
        assert!(!q.submit(inputs(10_000..10_010), b.clone()));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let s = sizes.clone();
        q.clone()
            .drain(|chunk: Vec<ActivityInput>| {
                s.lock().unwrap().push(chunk.len());
                let out = chunk.iter().map(|i| Ok(i.event[1..].to_string())).collect();
                async move { out }
            })
            .await;
        assert_eq!(*sizes.lock().unwrap(), vec![4096, 4096, 1818]);
        assert_eq!(*a.0.lock().unwrap(), (0..10_000).collect::<Vec<_>>());
        assert_eq!(*b.0.lock().unwrap(), (10_000..10_010).collect::<Vec<_>>());
        // Drained: the next submit must start a drainer again.
        assert!(q.barrier().is_none());
        assert!(q.submit(inputs(0..1), b));
    }

    #[tokio::test]
    async fn a_barrier_fires_after_what_was_queued_before_it() {
        let q = Arc::new(Ordered::default());
        let a = Arc::new(Collect(Mutex::new(Vec::new())));
        assert!(q.submit(inputs(0..5000), a.clone()));
        let first = q.barrier().expect("a drainer is due");
        assert!(!q.submit(inputs(5000..5001), a.clone()));
        let second = q.barrier().expect("still draining");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l, mut first, mut second) = (log.clone(), first, second);
        q.drain(move |chunk: Vec<ActivityInput>| {
            // What the barriers said before this chunk was sent.
            l.lock().unwrap().push((
                chunk.len(),
                first.try_recv().is_ok(),
                second.try_recv().is_ok(),
            ));
            let out = chunk.iter().map(|i| Ok(i.event[1..].to_string())).collect();
            async move { out }
        })
        .await;
        // 4,096, then the rest of the first batch (ended by the first marker), then the batch
        // after it: the first barrier had fired before that one was sent.
        assert_eq!(
            *log.lock().unwrap(),
            vec![(4096, false, false), (904, false, false), (1, true, false)]
        );
    }

    #[tokio::test]
    async fn the_byte_budget_splits_big_inputs_but_never_empties_a_chunk() {
        let q = Arc::new(Ordered::default());
        let a = Arc::new(Collect(Mutex::new(Vec::new())));
        let big: Vec<ActivityInput> = (0..5)
            .map(|i| ActivityInput {
                event: format!("E{i}"),
                reason: Some("r".repeat(3 << 20)),
                ..Default::default()
            })
            .collect();
        assert!(q.submit(big, a.clone()));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let s = sizes.clone();
        q.drain(|chunk: Vec<ActivityInput>| {
            s.lock().unwrap().push(chunk.len());
            let out = chunk.iter().map(|i| Ok(i.event[1..].to_string())).collect();
            async move { out }
        })
        .await;
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1, 1, 1, 1]);
        assert_eq!(*a.0.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }
}
