//! The mirror's invariant under random interleavings: uploads, deletes,
//! identical re-uploads, restic's delete-then-retry, wrong content under a
//! taken name, locks, store outages and server restarts (SIGTERM and
//! SIGKILL), checked at every quiet point: once `mirror status` says
//! CURRENT, the bucket holds exactly the data directory's files (deletes
//! mirrored), each with the right bytes, and no lock.
//!
//! The run is seeded (REST_SERVER_TEST_SEED, else a fixed seed), printed
//! on failure, so a failing sequence can be replayed.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::mirror::{bucket_server, mirror_status, mirrored_server};
use crate::util::seaweed::SeaweedFs;
use crate::util::*;

/// Deletes mirrored, and more uploads at once than the default, so that
/// operations on one name overlap more often.
const SERVER_FLAGS: &[&str] = &["--mirror-deletes", "--mirror-uploads", "3"];

/// Steps of one run, and how often a quiet point is checked.
const STEPS: usize = 70;
const QUIET_EVERY: usize = 10;
/// Long enough for a backlog to drain on a loaded CI machine; the wait ends
/// at CURRENT, not at the timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

/// A small xorshift generator: the sequence is the seed's alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Names in a v1 listing (`["id", ...]`).
fn listed(text: &str) -> Vec<String> {
    text.split('"')
        .filter(|part| part.len() == 64)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_bucket_matches_the_disk_whenever_the_mirror_says_current() {
    let test = "mirror_random::the_bucket_matches_the_disk_whenever_the_mirror_says_current";
    if !require_tool("weed", test) {
        return;
    }
    let seed = std::env::var("REST_SERVER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_u64);
    let mut rng = Rng(seed | 1);
    let mut store = SeaweedFs::start();
    let dir = TempDir::new("mirror-random");
    let data = dir.path().join("data");
    let mut server = mirrored_server(&store, &data, SERVER_FLAGS);
    assert_eq!(server.request("POST", "/repo/?create=true").status, 200);
    // What the data directory holds: id -> content seed.
    let mut local: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_seed = 1u64;
    let mut history: Vec<String> = Vec::new();
    let content = |seed: u64| pseudo_random(1000 + (seed as usize * 7919) % 300_000, seed);
    let post = |server: &Server, id: &str, body: &[u8]| {
        server
            .send(&Request::new("POST", &format!("/repo/data/{id}")).body(body))
            .status
    };
    let pick = |rng: &mut Rng, local: &BTreeMap<String, u64>| {
        let at = rng.below(local.len());
        let (id, seed) = local.iter().nth(at).unwrap();
        (id.clone(), *seed)
    };
    let mut store_up = true;
    for step in 1..=STEPS {
        let op = rng.below(100);
        let what = match op {
            _ if local.is_empty() || op < 35 => {
                let seed = next_seed;
                next_seed += 1;
                let body = content(seed);
                let id = sha256_hex(&body);
                assert_eq!(post(&server, &id, &body), 200, "step {step}");
                local.insert(id, seed);
                format!("upload {seed}")
            }
            35..50 => {
                let (id, seed) = pick(&mut rng, &local);
                let path = format!("/repo/data/{id}");
                assert_eq!(server.request("DELETE", &path).status, 200);
                local.remove(&id);
                format!("delete {seed}")
            }
            50..60 => {
                let (id, seed) = pick(&mut rng, &local);
                assert_eq!(post(&server, &id, &content(seed)), 200, "step {step}");
                format!("same again {seed}")
            }
            60..72 => {
                let (id, seed) = pick(&mut rng, &local);
                let path = format!("/repo/data/{id}");
                assert_eq!(server.request("DELETE", &path).status, 200);
                assert_eq!(post(&server, &id, &content(seed)), 200, "step {step}");
                format!("delete and again {seed}")
            }
            72..77 => {
                let (id, seed) = pick(&mut rng, &local);
                let refused = post(&server, &id, b"other content");
                assert!(refused >= 400, "step {step}: {refused}");
                format!("other content under {seed}")
            }
            77..82 => {
                let (_, stored) = {
                    let body = pseudo_random(100, 1_000_000 + step as u64);
                    let id = sha256_hex(&body);
                    let path = format!("/repo/locks/{id}");
                    (id, server.send(&Request::new("POST", &path).body(body)))
                };
                assert_eq!(stored.status, 200);
                "lock".to_string()
            }
            82..90 => {
                if store_up {
                    store.stop();
                } else {
                    store.restart();
                }
                store_up = !store_up;
                format!("store {}", if store_up { "up" } else { "down" })
            }
            _ => {
                let signal = if rng.below(2) == 0 {
                    Signal::SIGKILL
                } else {
                    Signal::SIGTERM
                };
                server.stop_with(signal);
                server = mirrored_server(&store, &data, SERVER_FLAGS);
                format!("server restarted after {signal:?}")
            }
        };
        history.push(what);
        if step % QUIET_EVERY != 0 {
            continue;
        }
        // A quiet point: the store up, the mirror drained.
        if !store_up {
            store.restart();
            store_up = true;
            history.push("store up".to_string());
        }
        let current = eventually(DRAIN_TIMEOUT, || mirror_status(&data).0);
        let context = format!(
            "seed {seed}, step {step}: {}\n{}\n{}",
            history.join(", "),
            mirror_status(&data).1,
            server.log()
        );
        assert!(current, "never CURRENT: {context}");
        let bucket = bucket_server(&store, dir.path());
        // A SeaweedFS just restarted lists its files a moment before it
        // can read them ("volume 1 not found", a 500): wait for it to serve
        // one file (a file missing from the bucket is a 404, not a 500).
        if let Some(id) = local.keys().next() {
            let path = format!("/repo/data/{id}");
            assert!(
                eventually(Duration::from_secs(60), || bucket
                    .request("GET", &path)
                    .status
                    != 500),
                "the store does not serve reads: {}",
                store.log()
            );
        }
        let mut held = listed(&bucket.request("GET", "/repo/data/").text());
        held.sort();
        let want: Vec<String> = local.keys().cloned().collect();
        assert_eq!(held, want, "the bucket differs from the disk: {context}");
        for (id, seed) in &local {
            let got = bucket.request("GET", &format!("/repo/data/{id}"));
            assert!(
                got.status == 200 && got.body == content(*seed),
                "{id} (seed {seed}): {} with {} bytes, {} wanted: {context}\nbucket: {}",
                got.status,
                got.body.len(),
                content(*seed).len(),
                bucket.log(),
            );
        }
        let locks = bucket.request("GET", "/repo/locks/");
        assert!(
            locks.status == 404 || listed(&locks.text()).is_empty(),
            "a lock was mirrored: {context}"
        );
    }
}
