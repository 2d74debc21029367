//! Concurrent puts on a standalone Redis go out together: one `put_many` call carries every put
//! that queued while earlier calls were in flight, so Redis reads, dispatches and answers one
//! command for many (measured: about a third less Redis CPU per put than one `FCALL` each). A
//! lone put goes out at once as a plain `put`, so an idle server adds no wait. Cluster rooms sit
//! in different slots, so the cluster store never batches.
//!
//! A run (several puts in one room, such as a WebSocket client's burst) is queued as one unit
//! and never split between calls: its puts stay in order, next to each other, and `put_many`
//! runs them with one read and one write of the room.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::StoreError;
use super::redis::{Conn, Library, Op, Reply, query_reloading};

/// Puts waiting for a call; a full queue makes writers wait (their request timeout bounds it).
const QUEUE: usize = 4096;
/// Most puts in one call: keeps one call's Redis time (about 15 µs a put) near a millisecond.
/// Also the longest run [`PutBatcher::put_run`] takes.
pub(super) const MAX_BATCH: usize = 64;
/// Calls in flight at once; puts arriving meanwhile form the next batch.
const MAX_IN_FLIGHT: usize = 4;

/// One put's own `FCALL` arguments (see `lua/put.lua`): slot, data, content type,
/// precondition, ttl, content type JSON.
pub(super) type PutArgs = [Bytes; 6];

/// A run of puts in one room: their `FCALL` keys and arguments, and who waits for the replies.
pub(super) struct QueuedRun {
    keys: [String; 3],
    now: u64,
    code: String,
    puts: Vec<PutArgs>,
    reply: oneshot::Sender<Result<Vec<Reply>, StoreError>>,
}

/// The queue's sending side; the batching task ends when it is dropped.
pub(super) struct PutBatcher {
    queue: mpsc::Sender<QueuedRun>,
}

/// What a batch call needs.
#[derive(Clone)]
struct Caller {
    conn: Conn,
    library: Arc<Library>,
    timeout: Duration,
    errors: prometheus::IntCounter,
}

impl PutBatcher {
    pub(super) fn spawn(
        conn: Conn,
        library: Arc<Library>,
        timeout: Duration,
        errors: prometheus::IntCounter,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let caller = Caller {
            conn,
            library,
            timeout,
            errors,
        };
        tokio::spawn(collect(rx, caller));
        Self { queue }
    }

    /// Runs puts in one room, in order (alone or with others' puts); their replies as lone
    /// `put`s would give them. At most [`MAX_BATCH`] puts.
    pub(super) async fn put_run(
        &self,
        keys: [String; 3],
        now: u64,
        code: &str,
        puts: Vec<PutArgs>,
    ) -> Result<Vec<Reply>, StoreError> {
        debug_assert!((1..=MAX_BATCH).contains(&puts.len()));
        let (reply, answer) = oneshot::channel();
        let queued = QueuedRun {
            keys,
            now,
            code: code.to_owned(),
            puts,
            reply,
        };
        if self.queue.send(queued).await.is_err() {
            return Err(StoreError::Unavailable("the put queue is closed".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the put batch was lost".into())))
    }
}

/// Takes queued runs as calls free up: whatever queued meanwhile goes in the next call, up to
/// [`MAX_BATCH`] puts (a run that does not fit starts the call after).
async fn collect(mut rx: mpsc::Receiver<QueuedRun>, caller: Caller) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut held = None;
    loop {
        let first = match held.take() {
            Some(run) => run,
            None => match rx.recv().await {
                Some(run) => run,
                None => return,
            },
        };
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let mut puts = first.puts.len();
        let mut batch = vec![first];
        while puts < MAX_BATCH {
            match rx.try_recv() {
                Ok(run) if puts + run.puts.len() > MAX_BATCH => {
                    held = Some(run);
                    break;
                }
                Ok(run) => {
                    puts += run.puts.len();
                    batch.push(run);
                }
                Err(_) => break,
            }
        }
        let caller = caller.clone();
        tokio::spawn(async move {
            caller.call(batch, puts).await;
            drop(permit);
        });
    }
}

impl Caller {
    async fn call(mut self, batch: Vec<QueuedRun>, puts: usize) {
        let op = if puts == 1 { Op::Put } else { Op::PutMany };
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(self.library.function(op)).arg(3 * puts);
        for run in &batch {
            for _ in &run.puts {
                cmd.arg(&run.keys[..]);
            }
        }
        for run in &batch {
            for args in &run.puts {
                cmd.arg(run.now).arg(&run.code);
                for arg in args {
                    cmd.arg(&arg[..]);
                }
            }
        }
        let result = tokio::time::timeout(
            self.timeout,
            query_reloading(&mut self.conn, &self.library, &cmd),
        )
        .await;
        let replies = match result {
            Ok(Ok(reply)) => split(reply, puts),
            Ok(Err(err)) => Err(StoreError::Unavailable(err.to_string())),
            Err(_) => Err(StoreError::Unavailable(
                "Redis did not answer in time".into(),
            )),
        };
        match replies {
            Ok(replies) => {
                let mut replies = replies.into_iter();
                for run in batch {
                    let answers = replies.by_ref().take(run.puts.len()).collect();
                    // A writer that gave up (its request timed out) no longer listens.
                    let _ = run.reply.send(Ok(answers));
                }
            }
            Err(err) => {
                self.errors.inc_by(puts as u64);
                for run in batch {
                    let _ = run.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// One reply per put: a lone `put`'s reply as is, `put_many`'s two entries per put.
fn split(reply: Reply, puts: usize) -> Result<Vec<Reply>, StoreError> {
    if puts == 1 {
        return Ok(vec![reply]);
    }
    if reply.len() != 2 * puts {
        return Err(StoreError::Unavailable(format!(
            "unexpected reply from Redis script: {} entries for {puts} puts",
            reply.len()
        )));
    }
    let mut entries = reply.into_iter();
    Ok((0..puts)
        .map(|_| entries.by_ref().take(2).collect::<Vec<Value>>())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_replies_split_in_pairs() {
        let v = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let one = split(vec![v("ok"), v("{}")], 1).unwrap();
        assert_eq!(one, vec![vec![v("ok"), v("{}")]]);
        let two = split(vec![v("ok"), v("{}"), v("precondition"), v("3")], 2).unwrap();
        assert_eq!(two[1], vec![v("precondition"), v("3")]);
        assert!(split(vec![v("ok")], 2).is_err());
    }
}
