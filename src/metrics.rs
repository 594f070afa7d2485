//! `--prometheus`: `/metrics` in the Prometheus text format.
//!
//! rest-server's blob counters keep their names and labels (`user`, `repo`,
//! `type`), so existing dashboards keep working. Added for an appliance:
//! bytes and objects stored and the newest snapshot per repository (from
//! [`crate::quota::usage`]), free and total bytes of the data filesystem, failed
//! logins and uploads refused by verification.
//! Everything lives on the event-loop thread, hence `RefCell`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::logging::LogHealth;
use crate::quota::Budget;
use crate::quota::usage::Usage;
use crate::repo::ObjectType;
use crate::store::Space;

/// What happened to a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobOp {
    Read,
    Write,
    Delete,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    count: u64,
    bytes: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct BlobCounters {
    read: Counter,
    write: Counter,
    delete: Counter,
}

/// A counter of the logs' health: name, help text, and how to read it.
type LogFamily = (&'static str, &'static str, fn(&LogHealth) -> u64);

/// User, repository (None: one that does not exist, or past the cap), type.
type BlobKey = (String, Option<String>, &'static str);

/// Repositories with series of their own. Requests for any other path
/// (missing repositories: a client may name endless ones) are counted
/// without a `repo` label, so `/metrics` stays bounded.
pub(crate) const MAX_REPO_SERIES: usize = 1000;

/// One of rest-server's blob counters: name, help text, and how to read it.
type BlobFamily = (&'static str, &'static str, fn(&BlobCounters) -> u64);

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    blobs: RefCell<BTreeMap<BlobKey, BlobCounters>>,
    /// The repositories with series of their own.
    repos: RefCell<BTreeSet<String>>,
    auth_failures: RefCell<BTreeMap<&'static str, u64>>,
    verification_failures: Cell<u64>,
}

impl Metrics {
    pub(crate) fn new(repos: Vec<String>) -> Metrics {
        if repos.len() > MAX_REPO_SERIES {
            log::warn!(
                "metrics: {} repositories, series for the first {MAX_REPO_SERIES} only",
                repos.len()
            );
        }
        Metrics {
            repos: RefCell::new(repos.into_iter().take(MAX_REPO_SERIES).collect()),
            ..Metrics::default()
        }
    }

    /// A repository was created (or written to): it gets series of its own,
    /// up to [`MAX_REPO_SERIES`]. Whether it has them.
    pub(crate) fn repo_exists(&self, repo: &str) -> bool {
        let mut repos = self.repos.borrow_mut();
        if repos.contains(repo) {
            return true;
        }
        if repos.len() >= MAX_REPO_SERIES {
            return false;
        }
        repos.insert(repo.to_string());
        true
    }

    fn known(&self, repo: &str) -> bool {
        self.repos.borrow().contains(repo)
    }

    /// Counts a blob read, write or delete by `user` (empty without auth).
    /// A write makes the repository known; reads and deletes count under it
    /// only if it is.
    pub(crate) fn blob(&self, op: BlobOp, user: &str, repo: &str, kind: ObjectType, bytes: u64) {
        let labelled = match op {
            BlobOp::Write => self.repo_exists(repo),
            BlobOp::Read | BlobOp::Delete => self.known(repo),
        };
        let key = (
            user.to_string(),
            labelled.then(|| repo.to_string()),
            kind.dir_name(),
        );
        let mut blobs = self.blobs.borrow_mut();
        let counters = blobs.entry(key).or_default();
        let counter = match op {
            BlobOp::Read => &mut counters.read,
            BlobOp::Write => &mut counters.write,
            BlobOp::Delete => &mut counters.delete,
        };
        counter.count += 1;
        counter.bytes += bytes;
    }

    /// Counts a refused login, by its reason.
    pub(crate) fn auth_failed(&self, reason: &'static str) {
        *self.auth_failures.borrow_mut().entry(reason).or_default() += 1;
    }

    /// Counts an upload that did not match its name.
    pub(crate) fn verification_failed(&self) {
        self.verification_failures
            .set(self.verification_failures.get() + 1);
    }

    /// The text exposition format, version 0.0.4.
    pub(crate) fn render(&self, usage: &Usage, space: Option<Space>, logs: &[LogHealth]) -> String {
        let mut out = String::with_capacity(4096);
        let blobs = self.blobs.borrow();
        let families: [BlobFamily; 6] = [
            (
                "rest_server_blob_read_total",
                "Total number of blobs read",
                |c| c.read.count,
            ),
            (
                "rest_server_blob_read_bytes_total",
                "Total number of bytes read from blobs",
                |c| c.read.bytes,
            ),
            (
                "rest_server_blob_write_total",
                "Total number of blobs written",
                |c| c.write.count,
            ),
            (
                "rest_server_blob_write_bytes_total",
                "Total number of bytes written to blobs",
                |c| c.write.bytes,
            ),
            (
                "rest_server_blob_delete_total",
                "Total number of blobs deleted",
                |c| c.delete.count,
            ),
            (
                "rest_server_blob_delete_bytes_total",
                "Total number of bytes of blobs deleted",
                |c| c.delete.bytes,
            ),
        ];
        for (name, help, value) in families {
            header(&mut out, name, help, "counter");
            for ((user, repo, kind), counters) in blobs.iter() {
                let repo = match repo {
                    Some(repo) => format!("repo=\"{}\",", escape(repo)),
                    None => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{name}{{{repo}type=\"{kind}\",user=\"{}\"}} {}",
                    escape(user),
                    value(counters)
                );
            }
        }
        let labelled = self.repos.borrow();
        let repos: Vec<_> = usage
            .snapshot()
            .into_iter()
            .filter(|(repo, _)| labelled.contains(repo))
            .collect();
        header(
            &mut out,
            "rest_server_repo_stored_bytes",
            "Bytes stored in the repository",
            "gauge",
        );
        for (repo, stats) in repos.iter() {
            let _ = writeln!(
                out,
                "rest_server_repo_stored_bytes{{repo=\"{}\"}} {}",
                escape(repo),
                stats.bytes
            );
        }
        header(
            &mut out,
            "rest_server_repo_objects",
            "Objects stored in the repository (its config not counted)",
            "gauge",
        );
        for (repo, stats) in repos.iter() {
            let _ = writeln!(
                out,
                "rest_server_repo_objects{{repo=\"{}\"}} {}",
                escape(repo),
                stats.objects
            );
        }
        header(
            &mut out,
            "rest_server_repo_newest_snapshot_timestamp_seconds",
            "When the newest snapshot file of the repository was written (Unix time)",
            "gauge",
        );
        for (repo, stats) in repos.iter() {
            if let Some(time) = stats.newest_snapshot {
                let _ = writeln!(
                    out,
                    "rest_server_repo_newest_snapshot_timestamp_seconds{{repo=\"{}\"}} {time}",
                    escape(repo)
                );
            }
        }
        let deletes = usage.deletes();
        if !deletes.is_empty() {
            header(
                &mut out,
                "rest_server_repo_deleted_24h",
                "Files of the repository deleted in the last 24 hours, by type",
                "gauge",
            );
            for (repo, recent, _) in &deletes {
                for (kind, n) in [("snapshots", recent.snapshots), ("data", recent.data)] {
                    let _ = writeln!(
                        out,
                        "rest_server_repo_deleted_24h{{repo=\"{}\",type=\"{kind}\"}} {n}",
                        escape(repo)
                    );
                }
            }
            header(
                &mut out,
                "rest_server_repo_delete_alarm",
                "1 when a share of the repository's snapshots past --delete-alarm was deleted in the last 24 hours",
                "gauge",
            );
            for (repo, _, alarm) in &deletes {
                let _ = writeln!(
                    out,
                    "rest_server_repo_delete_alarm{{repo=\"{}\"}} {}",
                    escape(repo),
                    u8::from(*alarm)
                );
            }
        }
        if let Some(space) = space {
            header(
                &mut out,
                "rest_server_filesystem_free_bytes",
                "Bytes available to the server on the data filesystem",
                "gauge",
            );
            let _ = writeln!(out, "rest_server_filesystem_free_bytes {}", space.free);
            header(
                &mut out,
                "rest_server_filesystem_size_bytes",
                "Size of the data filesystem in bytes",
                "gauge",
            );
            let _ = writeln!(out, "rest_server_filesystem_size_bytes {}", space.total);
            if let Some(trash) = space.trash {
                header(
                    &mut out,
                    "rest_server_trash_files",
                    "Files deleted by clients and kept in the trash (--trash-days)",
                    "gauge",
                );
                let _ = writeln!(out, "rest_server_trash_files {}", trash.files);
                header(
                    &mut out,
                    "rest_server_trash_bytes",
                    "Bytes in the trash, part of the data filesystem's used bytes",
                    "gauge",
                );
                let _ = writeln!(out, "rest_server_trash_bytes {}", trash.bytes);
            }
        }
        header(
            &mut out,
            "rest_server_auth_failures_total",
            "Requests refused for missing or wrong credentials, by reason",
            "counter",
        );
        for (reason, count) in self.auth_failures.borrow().iter() {
            let _ = writeln!(
                out,
                "rest_server_auth_failures_total{{reason=\"{reason}\"}} {count}"
            );
        }
        header(
            &mut out,
            "rest_server_upload_verification_failures_total",
            "Uploads refused because their content did not match their name",
            "counter",
        );
        let _ = writeln!(
            out,
            "rest_server_upload_verification_failures_total {}",
            self.verification_failures.get()
        );
        let log_families: [LogFamily; 2] = [
            (
                "rest_server_log_lines_dropped_total",
                "Log lines dropped because the log output was too slow",
                |h| h.dropped,
            ),
            (
                "rest_server_log_write_errors_total",
                "Writes of log lines that failed",
                |h| h.write_errors,
            ),
        ];
        for (name, help, value) in log_families {
            header(&mut out, name, help, "counter");
            for health in logs {
                let _ = writeln!(out, "{name}{{log=\"{}\"}} {}", health.log, value(health));
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Each `--quota-file` budget's limit and use.
pub(crate) fn render_budgets(budgets: &[Budget], out: &mut String) {
    use std::fmt::Write as _;
    for (name, help, value) in [
        (
            "rest_server_quota_limit_bytes",
            "Bytes a --quota-file budget allows",
            (|b: &Budget| b.limit) as fn(&Budget) -> u64,
        ),
        (
            "rest_server_quota_used_bytes",
            "Bytes stored and being uploaded in a --quota-file budget",
            |b: &Budget| b.used,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for budget in budgets {
            let _ = writeln!(
                out,
                "{name}{{group=\"{}\",rule=\"{}\"}} {}",
                escape(&budget.group.to_string()),
                escape(&budget.rule),
                value(budget)
            );
        }
    }
}

/// Label values may hold any UTF-8; the format needs `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_budgets() {
        let budget = Budget {
            rule: "/alice/*".into(),
            group: crate::quota::rules::Group {
                rule: 0,
                label: "alice".into(),
            },
            used: 900,
            limit: 1000,
        };
        let mut text = String::new();
        render_budgets(&[budget], &mut text);
        assert!(
            text.contains("rest_server_quota_used_bytes{group=\"/alice\",rule=\"/alice/*\"} 900"),
            "{text}"
        );
        assert!(
            text.contains("rest_server_quota_limit_bytes{group=\"/alice\",rule=\"/alice/*\"} 1000"),
            "{text}"
        );
    }

    #[test]
    fn counts_and_renders() {
        let mut repos = BTreeMap::new();
        repos.insert(
            "alice".to_string(),
            crate::store::RepoStats {
                bytes: 130,
                objects: 3,
                newest_snapshot: Some(5),
                snapshots: 1,
                trash_bytes: 0,
            },
        );
        // Only repositories with series of their own are shown.
        repos.insert("bob".to_string(), Default::default());
        let usage = Usage::new(repos);
        let metrics = Metrics::new(vec!["alice".to_string()]);
        metrics.blob(BlobOp::Write, "alice", "alice", ObjectType::Data, 50);
        metrics.blob(BlobOp::Read, "alice", "alice", ObjectType::Data, 20);
        metrics.blob(BlobOp::Delete, "alice", "alice", ObjectType::Data, 30);
        metrics.auth_failed(crate::auth::AuthError::WrongPassword.reason());
        metrics.verification_failed();
        let logs = [LogHealth {
            log: "access",
            dropped: 3,
            write_errors: 4,
        }];
        let text = metrics.render(
            &usage,
            Some(Space {
                free: 1,
                total: 2,
                trash: None,
            }),
            &logs,
        );
        assert!(text.contains("rest_server_log_lines_dropped_total{log=\"access\"} 3"));
        assert!(text.contains("rest_server_log_write_errors_total{log=\"access\"} 4"));
        assert!(text.contains(
            "rest_server_blob_write_bytes_total{repo=\"alice\",type=\"data\",user=\"alice\"} 50"
        ));
        assert!(text.contains(
            "rest_server_blob_read_total{repo=\"alice\",type=\"data\",user=\"alice\"} 1"
        ));
        assert!(text.contains("rest_server_repo_stored_bytes{repo=\"alice\"} 130"));
        assert!(text.contains("rest_server_repo_objects{repo=\"alice\"} 3"));
        assert!(!text.contains("bob"), "{text}");
        assert!(
            text.contains("rest_server_repo_newest_snapshot_timestamp_seconds{repo=\"alice\"} 5")
        );
        assert!(text.contains("rest_server_auth_failures_total{reason=\"wrong password\"} 1"));
        assert!(text.contains("rest_server_upload_verification_failures_total 1"));
        assert!(text.contains("rest_server_filesystem_size_bytes 2"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn paths_of_missing_repositories_get_no_series_of_their_own() {
        let metrics = Metrics::default();
        let usage = Usage::default();
        for i in 0..50 {
            metrics.blob(BlobOp::Delete, "", &format!("nope{i}"), ObjectType::Data, 0);
            metrics.blob(BlobOp::Read, "", &format!("nope{i}"), ObjectType::Keys, 0);
        }
        let text = metrics.render(&usage, None, &[]);
        assert!(!text.contains("nope"), "{text}");
        assert!(text.contains("rest_server_blob_delete_total{type=\"data\",user=\"\"} 50"));
        // Created repositories have them, up to the cap.
        for i in 0..MAX_REPO_SERIES + 10 {
            metrics.repo_exists(&format!("r{i}"));
        }
        metrics.blob(BlobOp::Write, "", "r1", ObjectType::Data, 7);
        usage.wrote("r1", Some(ObjectType::Data), 7);
        let extra = format!("r{}", MAX_REPO_SERIES + 5);
        metrics.blob(BlobOp::Write, "", &extra, ObjectType::Data, 7);
        usage.wrote(&extra, Some(ObjectType::Data), 7);
        let text = metrics.render(&usage, None, &[]);
        assert!(text.contains("rest_server_repo_stored_bytes{repo=\"r1\"} 7"));
        assert!(!text.contains(&format!("\"{extra}\"")));
        assert_eq!(metrics.repos.borrow().len(), MAX_REPO_SERIES);
    }
}
