//! Receiving an upload: the request body streamed into a store upload,
//! hashed on the way, within the size limit and the `--max-size` quota.
//!
//! What is uploaded decides the checks ([`Checks::for_key`]): keys, locks,
//! snapshots and the config are small metadata, capped at
//! `--max-metadata-size`; objects are verified against their name (the
//! SHA-256 of their content) unless `--no-verify-upload`.
//!
//! Body chunks are gathered into one of two buffers (192 to 512 KiB, by how
//! many uploads share the budget) on the event loop. A buffer too full for
//! another chunk goes at once to the store (for the filesystem, a write on
//! the upload writer threads) and to the hasher (the compute pool); the
//! next one is handed over when both are done with the previous, and that
//! previous buffer is then filled again. So receiving, hashing and writing
//! overlap, with two buffers per upload; per buffer, only the two replies
//! are allocated (and a new buffer when its size changes).
//!
//! Memory is bounded however many uploads there are and however they behave
//! ([`BufferBudget`]): the buffers come from a budget shared by all uploads;
//! an upload that finds no room hands hyper's chunks on as they come (no
//! copy, more hand-offs, one chunk at a time), and an upload whose body
//! pauses for [`STALL_RELEASE`] hands over what it has gathered and gives its
//! buffers back. Stalled uploads hold no buffers of ours.
//!
//! Nothing is visible under the name until the whole body has arrived,
//! matched its name and been committed: on any error the store upload is
//! aborted, and the refusal is sent once nothing of it is left.
//!
//! A name that is taken is no error when the content is the same: restic
//! retries an upload whose answer was lost ([`Receiver::compare`]).

mod body;
mod budget;
mod error;
mod sending;

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use body::next_data;
pub(crate) use body::{
    After, READ_BUFFER_BYTES, ReaderBody, UploadBody, drain_small_body, upload_body,
};
pub(crate) use budget::{BUFFERED_UPLOADS, BufferBudget};
pub(crate) use error::UploadError;
use sending::Sending;

use crate::config::Config;
use crate::quota::{Quota, Reservation};
use crate::repo::Key;
use crate::repo::RepoPath;
use crate::repo::range::Want;
use crate::runtime::pool::{ComputePool, Sha256};
use crate::store::{Incoming, ObjectReader as _, Store, StoreError, Upload};

/// How long a body may pause before its upload gives its buffers back to the
/// budget (after handing over what they hold). A client that is sending does
/// not pause this long between two reads; one that stalls should not hold
/// memory others could use while `--body-timeout` runs.
const STALL_RELEASE: Duration = Duration::from_secs(1);

/// What an upload is checked against (its size, its hash), from what it
/// targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checks {
    /// Largest body accepted.
    pub(crate) max_bytes: Option<u64>,
    /// The SHA-256 the content must have.
    pub(crate) expected: Option<[u8; 32]>,
}

impl Checks {
    pub(crate) fn for_key(key: Key<'_>, config: &Config) -> Checks {
        let small = config.limits.max_metadata_bytes;
        match key {
            Key::Config => Checks {
                max_bytes: Some(small),
                expected: None,
            },
            Key::Object(kind, id) => Checks {
                max_bytes: kind.is_small().then_some(small),
                expected: config.verify_upload.then(|| id.digest()),
            },
        }
    }
}

/// The request side of an upload.
pub(crate) struct Receiver<'a> {
    pub(crate) checks: Checks,
    pub(crate) quota: &'a Rc<Quota>,
    pub(crate) compute: &'a ComputePool,
    pub(crate) buffers: &'a Rc<BufferBudget>,
    /// Longest pause allowed between two pieces of the body.
    pub(crate) body_timeout: Duration,
}

impl Receiver<'_> {
    /// Streams `body` into a new upload of `key` and commits it; returns the
    /// bytes stored. `declared` is the Content-Length, checked before
    /// anything is written. `after` runs once the file is committed, with
    /// its size, also when this future has been dropped meanwhile (must run
    /// inside a `LocalSet`).
    pub(crate) async fn receive<S: Store>(
        &self,
        store: &S,
        repo: &RepoPath,
        key: Key<'_>,
        declared: Option<u64>,
        body: UploadBody,
        after: After,
    ) -> Result<Received, UploadError> {
        let upload = match self.begin(store, repo, key, declared).await {
            Ok(upload) => upload,
            Err(Begin::Exists) => {
                return self.compare(store, repo, key, declared, body).await;
            }
            Err(Begin::Refused(e)) => {
                // Refused before a byte was read: see drain_small_body.
                drain_small_body(body, declared, self.body_timeout).await;
                return Err(e);
            }
        };
        let hash = self
            .checks
            .expected
            .map(|_| Sha256::new(self.compute.clone()));
        let mut sending = Sending::new(upload, hash, self.buffers.clone());
        let mut reservation = Reservation::new(self.quota.clone(), repo.label());
        let filled = self.fill(&mut sending, &mut reservation, body).await;
        // Only the upload goes on: the buffers, their room in the budget and
        // a place among the waiting are given back before the commit's
        // fsync (or the abort), which can take seconds on an SD card.
        let upload = sending.into_upload();
        let refusal = match filled {
            Ok((received, hash)) => match (self.checks.expected, hash) {
                (Some(expected), Some(digest)) if expected != digest => UploadError::HashMismatch,
                _ => {
                    // The commit and what follows it run in a task of their
                    // own: a client gone meanwhile (hyper then drops this
                    // future) must not leave a file in place that the quota
                    // does not count or the mirror never queues.
                    finish_detached(Box::pin(async move {
                        upload.commit().await?;
                        reservation.keep();
                        after(received).await;
                        Ok(received)
                    }))
                    .await?;
                    return Ok(Received::Stored(received));
                }
            },
            Err(e) => e,
        };
        // Nothing of the upload is left once the refusal is sent.
        upload.abort().await;
        Err(refusal)
    }

    /// Streams the body into the upload and the hasher; returns the bytes
    /// received and the digest (when hashed).
    async fn fill<U>(
        &self,
        sending: &mut Sending<U>,
        reservation: &mut Reservation,
        mut body: UploadBody,
    ) -> Result<(u64, Option<[u8; 32]>), UploadError>
    where
        U: Upload,
    {
        let mut received = 0u64;
        let first_wait = STALL_RELEASE.min(self.body_timeout);
        // One timer for the whole body, moved on only when it fires early
        // (a timer per piece cost a timer-wheel update, and often a wake-up
        // of the event loop, per 32 KiB).
        let mut stall = std::pin::pin!(tokio::time::sleep(first_wait));
        loop {
            let waiting_since = tokio::time::Instant::now();
            let next = loop {
                tokio::select! {
                    biased;
                    next = next_data(&mut body) => break next?,
                    () = &mut stall => {
                        let pause_ends = waiting_since + first_wait;
                        if tokio::time::Instant::now() < pause_ends {
                            stall.as_mut().reset(pause_ends);
                            continue;
                        }
                        // The body pauses (a frame not yet polled stays in
                        // the body).
                        sending.release().await?;
                        let next = self.next_chunk(&mut body, self.body_timeout - first_wait);
                        let next = next.await?;
                        stall.as_mut().reset(tokio::time::Instant::now() + first_wait);
                        break next;
                    }
                }
            };
            let Some(data) = next else { break };
            let len = data.len() as u64;
            if self
                .checks
                .max_bytes
                .is_some_and(|max| received + len > max)
            {
                return Err(UploadError::TooLarge);
            }
            reservation.grow(len).map_err(UploadError::Quota)?;
            received += len;
            sending.take(data).await?;
        }
        let hash = sending.finish().await?;
        Ok((received, hash))
    }

    /// The body's next piece of data within `limit`; None at its end.
    async fn next_chunk(
        &self,
        body: &mut UploadBody,
        limit: Duration,
    ) -> Result<Option<Bytes>, UploadError> {
        tokio::time::timeout(limit, next_data(body))
            .await
            .unwrap_or(Err(UploadError::BodyTimeout))
    }

    /// The name is taken: a retry of an upload whose answer was lost (restic
    /// retries) is answered 200 when its content is what is stored — it
    /// verifies against the name, or, unverified (`config`,
    /// `--no-verify-upload`), is byte-identical to the stored file. The
    /// stored file is never touched; anything else is 403.
    async fn compare<S>(
        &self,
        store: &S,
        repo: &RepoPath,
        key: Key<'_>,
        declared: Option<u64>,
        mut body: UploadBody,
    ) -> Result<Received, UploadError>
    where
        S: Store,
    {
        let mut stored = match self.checks.expected {
            Some(_) => None,
            None => Some(store.open(repo, key, Want::All).await?),
        };
        if let (Some(stored), Some(len)) = (&stored, declared)
            && stored.size() != len
        {
            drain_small_body(body, declared, self.body_timeout).await;
            return Err(UploadError::Taken);
        }
        let mut hash = self
            .checks
            .expected
            .map(|_| Sha256::new(self.compute.clone()));
        // Stored bytes read but not yet compared.
        let mut pending = Bytes::new();
        let mut same = true;
        let mut received = 0u64;
        while let Some(mut data) = self.next_chunk(&mut body, self.body_timeout).await? {
            received += data.len() as u64;
            if self.checks.max_bytes.is_some_and(|max| received > max) {
                return Err(UploadError::TooLarge);
            }
            if let Some(hash) = hash.as_mut() {
                hash.push(data).await?;
                continue;
            }
            let Some(reader) = stored.as_mut() else {
                continue;
            };
            // Compare with the stored file as far as both go.
            while same && !data.is_empty() {
                if pending.is_empty() {
                    match std::future::poll_fn(|cx| reader.poll_chunk(cx)).await {
                        Some(chunk) => pending = chunk?,
                        None => {
                            same = false;
                            break;
                        }
                    }
                }
                let n = pending.len().min(data.len());
                same = pending[..n] == data[..n];
                pending = pending.slice(n..);
                data = data.slice(n..);
            }
        }
        if let Some(hash) = hash {
            same = self.checks.expected == Some(hash.finish().await?);
        } else if let Some(mut reader) = stored
            && same
        {
            // The stored file must not go on past the body.
            same = pending.is_empty()
                && std::future::poll_fn(|cx| reader.poll_chunk(cx))
                    .await
                    .is_none();
        }
        if same {
            log::debug!("{repo}: re-upload of a stored file with the same content");
            Ok(Received::Same)
        } else {
            Err(UploadError::Taken)
        }
    }

    /// What can be refused before the body is read: a declared length over
    /// the limits, a name that is taken, a store that cannot start.
    async fn begin<S: Store>(
        &self,
        store: &S,
        repo: &RepoPath,
        key: Key<'_>,
        declared: Option<u64>,
    ) -> Result<S::Upload, Begin> {
        if let (Some(len), Some(max)) = (declared, self.checks.max_bytes)
            && len > max
        {
            return Err(Begin::Refused(UploadError::TooLarge));
        }
        let incoming = Incoming {
            length: declared,
            sha256: self.checks.expected,
        };
        let upload = store.begin_upload(repo, key, incoming).await;
        match upload {
            Err(e) if e.kind == crate::store::ErrorKind::AlreadyExists => Err(Begin::Exists),
            Err(e) => Err(Begin::Refused(UploadError::Storage(e))),
            // The quota after the name: a retry of a stored upload takes no
            // new space.
            Ok(upload) => match declared.map(|len| self.quota.check(&repo.label(), len)) {
                Some(Err(over)) => {
                    upload.abort().await;
                    Err(Begin::Refused(UploadError::Quota(over)))
                }
                _ => Ok(upload),
            },
        }
    }
}

/// Work that must finish once started, whatever becomes of the request
/// that started it (a commit and what follows it, a delete): boxed, so
/// that every such task is one type to tokio (each spawned type costs its
/// own copy of tokio's task code, and the binary is tight).
pub(crate) type Detached = std::pin::Pin<Box<dyn Future<Output = Result<u64, StoreError>>>>;

/// Runs `work` in a task of its own and waits for it (inside a `LocalSet`).
pub(crate) async fn finish_detached(work: Detached) -> Result<u64, StoreError> {
    tokio::task::spawn_local(work)
        .await
        .map_err(StoreError::lost_task)?
}

/// Why an upload did not start.
enum Begin {
    /// The name is taken: see [`Receiver::compare`].
    Exists,
    Refused(UploadError),
}

/// What came of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// Stored, this many bytes.
    Stored(u64),
    /// The name was taken by the same content; nothing was written.
    Same,
}

#[cfg(test)]
mod tests {
    use super::budget::{MAX_BUFFER_BYTES, MIN_BUFFER_BYTES, Waiting};
    use super::sending::CHUNK_ROOM;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::{Context, Poll};

    use tokio::sync::mpsc;

    use super::*;
    use crate::repo::{ObjectId, ObjectType};
    use crate::store::StoreError;
    use crate::store::memory::MemStore;

    /// A request body fed by the test, a chunk at a time.
    struct ChannelBody(mpsc::UnboundedReceiver<Bytes>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
        }
    }

    fn content() -> Vec<u8> {
        (0..3 * MAX_BUFFER_BYTES + 1234)
            .map(|i| (i * 31 % 251) as u8)
            .collect()
    }

    /// Uploads `content` in 10 KiB chunks, the first ten `drip` apart, then
    /// pausing `pause`; returns what the budget had free during the pause.
    async fn upload(
        budget: &Rc<BufferBudget>,
        drip: Duration,
        pause: Duration,
    ) -> (Vec<u8>, Bytes, usize) {
        let content = content();
        let id = ObjectId::parse(&crate::testing::sha256_hex(&content)).unwrap();
        let key = Key::Object(ObjectType::Data, &id);
        let store = MemStore::default();
        let repo = RepoPath::default();
        store.create_repo(&repo).await.unwrap();
        let quota = Rc::new(Quota::new(None, 0));
        let compute = ComputePool::start("test", 1).unwrap();
        let receiver = Receiver {
            checks: Checks {
                max_bytes: None,
                expected: Some(id.digest()),
            },
            quota: &quota,
            compute: &compute,
            buffers: budget,
            body_timeout: Duration::from_secs(60),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut chunks = content.chunks(10 * 1024);
        let feed = async {
            for chunk in chunks.by_ref().take(10) {
                tx.send(Bytes::copy_from_slice(chunk)).unwrap();
                tokio::time::sleep(drip).await;
            }
            tokio::time::sleep(pause / 2).await;
            let free = budget.free.get();
            tokio::time::sleep(pause / 2).await;
            for chunk in chunks {
                if tx.send(Bytes::copy_from_slice(chunk)).is_err() {
                    break;
                }
            }
            drop(tx);
            free
        };
        let receive = receiver.receive(
            &store,
            &repo,
            key,
            None,
            upload_body(ChannelBody(rx)),
            Box::new(|_| Box::pin(async {})),
        );
        let local = tokio::task::LocalSet::new();
        let (received, free_while_paused) =
            local.run_until(async { tokio::join!(receive, feed) }).await;
        assert_eq!(received.unwrap(), Received::Stored(content.len() as u64));
        (content, store.get(&repo, key).unwrap(), free_while_paused)
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_paused_upload_gives_its_buffers_back() {
        let budget = BufferBudget::new(1);
        let all = budget.total;
        // Sending without a pause, the upload holds the whole budget.
        let (_, _, free) = upload(&budget, Duration::ZERO, STALL_RELEASE / 2).await;
        assert_eq!(free, 0);
        assert_eq!(budget.free.get(), all, "returned at the end");
        let (content, stored, free) = upload(&budget, Duration::ZERO, STALL_RELEASE * 4).await;
        assert_eq!(free, all, "returned while the body pauses");
        assert_eq!(&stored[..], &content[..]);
        assert_eq!(budget.free.get(), all);
        assert_eq!((budget.holders.get(), budget.waiting.get()), (0, 0));
    }

    /// A body that keeps coming for longer than the pause allowed, then
    /// pauses: the pause is still seen (one timer serves the whole body).
    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_pause_after_a_steady_start_gives_the_buffers_back() {
        let budget = BufferBudget::new(1);
        let drip = STALL_RELEASE / 3;
        let (content, stored, free) = upload(&budget, drip, STALL_RELEASE * 4).await;
        assert_eq!(free, budget.total, "returned while the body pauses");
        assert_eq!(&stored[..], &content[..]);
        // Nor is a steady body taken for a paused one.
        let (_, _, free) = upload(&budget, drip, STALL_RELEASE / 2).await;
        assert_eq!(free, 0);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn with_the_budget_spent_chunks_go_through_unbuffered() {
        let budget = BufferBudget::new(0);
        let (content, stored, free) = upload(&budget, Duration::ZERO, Duration::ZERO).await;
        assert_eq!(free, 0);
        assert_eq!(&stored[..], &content[..]);
        assert_eq!(budget.waiting.get(), 0, "no longer waiting once ended");
    }

    /// An upload that receives a byte now and then still gives up its
    /// large buffers as soon as another upload waits for room.
    #[tokio::test(flavor = "current_thread")]
    async fn a_trickling_upload_shrinks_for_one_that_waits() {
        let budget = BufferBudget::new(BUFFERED_UPLOADS);
        let store = MemStore::default();
        let repo = RepoPath::default();
        store.create_repo(&repo).await.unwrap();
        let id = ObjectId::parse(&"ab".repeat(32)).unwrap();
        let key = Key::Object(ObjectType::Data, &id);
        let upload = store.begin_upload(&repo, key, Incoming::default());
        let mut trickling = Sending::new(upload.await.unwrap(), None, budget.clone());
        trickling.take(Bytes::from_static(b"x")).await.unwrap();
        let held = |s: &Sending<_>| s.buffers.as_ref().map(|b| b.grant.held);
        assert_eq!(held(&trickling), Some(2 * MAX_BUFFER_BYTES));
        let others = [budget.grant(&mut None), budget.grant(&mut None)];
        let mut waiting = None;
        assert!(budget.grant(&mut waiting).is_none());
        // Two more bytes: each hands over one oversized buffer, which
        // comes back at the share of four.
        trickling.take(Bytes::from_static(b"y")).await.unwrap();
        trickling.take(Bytes::from_static(b"z")).await.unwrap();
        let quarter = budget.total / 8;
        assert_eq!(held(&trickling), Some(2 * quarter));
        drop(others);
        assert!(budget.grant(&mut waiting).is_some());
    }

    /// An upload that keeps the pieces it is given, to see where they were
    /// cut, and how many of the body's chunks were still alive each time
    /// (each is a view of hyper's read buffer in the server).
    #[derive(Default)]
    struct Pieces {
        pieces: Vec<Bytes>,
        live_chunks: Arc<AtomicUsize>,
        live_at_push: Vec<usize>,
    }

    impl Upload for Pieces {
        async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
            self.pieces.push(chunk);
            self.live_at_push.push(self.live_chunks.load(SeqCst));
            Ok(())
        }

        async fn commit(self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// A body chunk that counts itself as live until dropped.
    struct Counted(Vec<u8>, Arc<AtomicUsize>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_sub(1, SeqCst);
        }
    }

    /// hyper's chunks go into the buffers whole and none is held while a
    /// buffer is handed over (a held one would pin hyper's read buffer
    /// while hyper reads on); the buffers still go out nearly full.
    #[tokio::test(flavor = "current_thread")]
    async fn no_chunk_is_held_through_a_hand_over() {
        let budget = BufferBudget::new(BUFFERED_UPLOADS);
        let mut sending = Sending::new(Pieces::default(), None, budget);
        let live = sending.upload.live_chunks.clone();
        let content = content();
        // As hyper gives them: the body's first bytes, read with the
        // headers, then reads of its whole buffer.
        let mut chunk_ends = vec![];
        let mut at = 0;
        for len in std::iter::once(1000).chain(std::iter::repeat(CHUNK_ROOM)) {
            if at == content.len() {
                break;
            }
            let end = (at + len).min(content.len());
            live.fetch_add(1, SeqCst);
            let chunk = Bytes::from_owner(Counted(content[at..end].to_vec(), live.clone()));
            sending.take(chunk).await.unwrap();
            chunk_ends.push(end);
            at = end;
        }
        sending.finish().await.unwrap();
        let Pieces {
            pieces,
            live_at_push,
            ..
        } = &sending.upload;
        assert!(live_at_push.iter().all(|&n| n == 0), "{live_at_push:?}");
        let mut end = 0;
        for piece in pieces {
            end += piece.len();
            assert!(chunk_ends.contains(&end), "a chunk was cut at {end}");
            let last = end == content.len();
            assert!(last || piece.len() > MAX_BUFFER_BYTES - CHUNK_ROOM);
        }
        assert_eq!(pieces.concat(), content);
    }

    #[test]
    fn uploads_share_the_budget_and_shrink_to_make_room() {
        let budget = BufferBudget::new(BUFFERED_UPLOADS);
        let mut waiting: [Option<Waiting>; 4] = Default::default();
        let mut first = budget.grant(&mut waiting[0]).unwrap();
        assert_eq!(first.held, 2 * MAX_BUFFER_BYTES, "alone: the largest");
        let mut others = vec![
            budget.grant(&mut waiting[1]).unwrap(),
            budget.grant(&mut waiting[2]).unwrap(),
        ];
        // 3 × 1 MiB: nothing left for a fourth, which waits.
        assert_eq!(budget.free.get(), 0);
        assert!(budget.grant(&mut waiting[3]).is_none());
        assert_eq!(budget.waiting.get(), 1);
        // The first refills its buffers: a quarter of 3 MiB each time.
        let quarter = budget.total / 8;
        assert_eq!(first.resize(MAX_BUFFER_BYTES), quarter);
        assert_eq!(first.resize(MAX_BUFFER_BYTES), quarter);
        assert_eq!(first.held, 2 * quarter);
        // Not yet room for the fourth's two buffers, until another shrinks.
        assert!(budget.grant(&mut waiting[3]).is_none());
        assert_eq!(others[0].resize(MAX_BUFFER_BYTES), quarter);
        // The fourth starts with what there is room for, and grows to its
        // share as the others shrink.
        let mut fourth = budget.grant(&mut waiting[3]).unwrap();
        assert_eq!(fourth.held, 2 * MIN_BUFFER_BYTES);
        assert!(waiting[3].is_none());
        assert_eq!(budget.waiting.get(), 0);
        assert_eq!(fourth.resize(MIN_BUFFER_BYTES), MIN_BUFFER_BYTES);
        assert_eq!(others[0].resize(MAX_BUFFER_BYTES), quarter);
        assert_eq!(others[1].resize(MAX_BUFFER_BYTES), quarter);
        assert_eq!(fourth.resize(MIN_BUFFER_BYTES), quarter);
        let held = first.held + fourth.held + others.iter().map(|g| g.held).sum::<usize>();
        assert_eq!(budget.free.get() + held, budget.total);
        // Alone again, an upload grows back to the largest as room allows.
        others.clear();
        drop(fourth);
        assert_eq!(first.resize(quarter), MAX_BUFFER_BYTES);
        assert_eq!(first.held, quarter + MAX_BUFFER_BYTES);
        drop(first);
        assert_eq!(budget.free.get(), budget.total);
        assert_eq!(budget.holders.get(), 0);
    }
}
