//! The status page: `GET /` from a browser. One server-rendered page, no
//! script, a few KiB, for the person who owns the box: is every laptop still
//! backing up, is the disk filling, is the mirror keeping up, is someone
//! guessing passwords.
//!
//! restic never asks for `/` with `Accept: text/html` (it only POSTs there to
//! create the root repository), so what restic sees is unchanged. The page
//! is built from what the server keeps in memory ([`crate::quota::usage`], the
//! mirror's and the scrub's state): a request never walks the disk.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::auth::acl::Access;
use crate::auth::refused::Refusal;
use crate::mirror::MirrorSummary;
use crate::quota::Budget;
use crate::quota::rules::Group;
use crate::repo::RepoPath;
use crate::scrub::ScrubSummary;
use crate::state::AppState;
use crate::store::{RepoStats, Space, Store};
use crate::time::{ago, duration, unix_now, utc};

/// Damaged objects listed by name at most; the rest are counted.
const MAX_DAMAGED_LISTED: usize = 20;

/// Everything the page shows, gathered once per request.
struct View {
    host: String,
    uptime: Duration,
    now: u64,
    /// Seconds after which a repository's newest snapshot is too old; 0: never.
    stale_after: u64,
    user: Option<String>,
    everything: bool,
    space: Option<Space>,
    repos: Vec<(String, RepoStats)>,
    /// The `--quota-file` budgets the shown repositories are in.
    budgets: Vec<Budget>,
    /// Shown repositories whose deletion alarm is raised: snapshots deleted
    /// in the last day, and those left.
    alarms: Vec<(String, u64, u64)>,
    mirror: Option<MirrorSummary>,
    scrub: Option<ScrubSummary>,
    refused: Option<Vec<Refusal>>,
}

/// The page's HTML for `GET /` with `Accept: text/html`, for an
/// authenticated `user` (None
/// without authentication). An administrator (see
/// [`crate::auth::policy::Policy::sees_everything`]) sees the whole server; any
/// other user only the repositories they may read, and the disk.
pub(crate) async fn page<S: Store>(state: &AppState<S>, user: Option<&str>) -> String {
    let policy = &state.policy;
    let everything = policy.sees_everything(user);
    let readable = |label: &str| {
        everything
            || RepoPath::from_label(label)
                .is_some_and(|repo| policy.authorize(user, &repo, Access::Read).is_ok())
    };
    let mut repos = state.usage.snapshot();
    let mut budgets = state.quota.budgets();
    if !everything {
        // A budget's use sums every repository in its group: shown only to
        // a user who may read each of them.
        let mut open: BTreeMap<Group, bool> = BTreeMap::new();
        for (label, _) in &repos {
            let may = readable(label);
            for group in state.quota.budgets_of(label) {
                *open.entry(group).or_insert(true) &= may;
            }
        }
        budgets.retain(|b| open.get(&b.group) == Some(&true));
        repos.retain(|(label, _)| readable(label));
    }
    let alarms = state
        .usage
        .deletes()
        .into_iter()
        .filter(|(label, _, alarm)| *alarm && readable(label))
        .map(|(label, recent, _)| {
            let left = repos
                .iter()
                .find(|(l, _)| *l == label)
                .map_or(0, |(_, s)| s.snapshots);
            (label, recent.snapshots, left)
        })
        .collect();
    let view = View {
        host: state.host.clone(),
        uptime: state.started.elapsed(),
        now: unix_now(),
        stale_after: state.config.stale_days.saturating_mul(86_400),
        user: user.map(str::to_string),
        everything,
        space: state.store.space().await,
        repos,
        budgets,
        alarms,
        mirror: everything
            .then(|| state.mirror.as_ref().map(|m| m.summary()))
            .flatten(),
        scrub: everything
            .then(|| state.scrub.as_ref().map(|s| s.summary()))
            .flatten(),
        refused: everything.then(|| state.refused.recent()),
    };
    view.render()
}

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:1em auto;max-width:48em;\
padding:0 .8em;color:#222}h1{font-size:1.3em;margin-bottom:.2em}h2{font-size:1.1em;\
margin:1.4em 0 .4em}table{border-collapse:collapse;width:100%}td,th{padding:.3em .4em;\
border-bottom:1px solid #ddd;text-align:left;overflow-wrap:break-word}.n{text-align:right}\
td.n{white-space:nowrap}.bad,tr.bad td{color:#b00;font-weight:bold}.sub{color:#666}\
meter{width:100%;height:1.2em}";

impl View {
    fn render(&self) -> String {
        let mut out = String::with_capacity(4096 + 160 * self.repos.len());
        let host = escape(&self.host);
        let _ = write!(
            out,
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <title>rest-server on {host}</title><style>{STYLE}</style></head><body>\
             <h1>rest-server on {host}</h1><p class=\"sub\">version {} · up {} · \
             clock {}",
            env!("CARGO_PKG_VERSION"),
            duration(self.uptime.as_secs()),
            utc(self.now),
        );
        if let Some(user) = &self.user {
            let _ = write!(out, " · signed in as {}", escape(user));
        }
        out.push_str("</p>");
        for (label, deleted, left) in &self.alarms {
            let _ = write!(
                out,
                "<h2 class=\"bad\">Deletion alarm</h2><p class=\"bad\">/{}: {deleted} of {} \
                 snapshots deleted in the last 24 hours.</p><p>If no one you trust pruned it, \
                 the deleted files may still be in the trash: see docs/trash.md \
                 (<code>rest-server trash list</code>).</p>",
                escape(label),
                deleted + left
            );
        }
        self.render_disk(&mut out);
        self.render_repos(&mut out);
        render_budgets(&mut out, &self.budgets);
        if let Some(mirror) = &self.mirror {
            render_mirror(&mut out, mirror, self.now);
        }
        if let Some(scrub) = &self.scrub {
            render_scrub(&mut out, scrub, self.now);
        }
        if let Some(refused) = &self.refused {
            render_refused(&mut out, refused, self.now);
        }
        out.push_str("</body></html>\n");
        out
    }

    fn render_disk(&self, out: &mut String) {
        out.push_str("<h2>Disk</h2>");
        let Some(space) = self.space else {
            out.push_str("<p>The repositories are in an S3 bucket.</p>");
            return;
        };
        let used = space.total.saturating_sub(space.free);
        let _ = write!(
            out,
            "<p>{} used of {}, <b>{} free</b>.</p>\
             <meter min=\"0\" max=\"{}\" value=\"{used}\" high=\"{}\"></meter>",
            bytes(used),
            bytes(space.total),
            bytes(space.free),
            space.total,
            space.total / 10 * 9,
        );
        if let Some(trash) = space.trash {
            let _ = write!(
                out,
                "<p>Trash: {} file(s), {}, each kept {} day(s) after its delete.</p>",
                trash.files,
                bytes(trash.bytes),
                trash.days
            );
        }
    }

    fn render_repos(&self, out: &mut String) {
        out.push_str("<h2>Repositories</h2>");
        if self.repos.is_empty() {
            out.push_str("<p>None yet.</p>");
            return;
        }
        out.push_str(
            "<table><tr><th>repository</th><th class=\"n\">size</th>\
             <th class=\"n\">objects</th><th class=\"n\">newest snapshot</th></tr>",
        );
        let (mut total, mut stale) = (0u64, 0usize);
        for (label, stats) in &self.repos {
            total += stats.bytes;
            let age = stats.newest_snapshot.map(|t| self.now.saturating_sub(t));
            let is_stale = self.stale_after > 0 && age.is_none_or(|a| a > self.stale_after);
            stale += usize::from(is_stale);
            let newest = match stats.newest_snapshot {
                None => "none".to_string(),
                Some(t) if t > self.now + 300 => "in the future: check the clock".to_string(),
                Some(t) => ago(self.now.saturating_sub(t)),
            };
            let _ = write!(
                out,
                "<tr{}><td>/{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{newest}</td></tr>",
                if is_stale { " class=\"bad\"" } else { "" },
                escape(label),
                bytes(stats.bytes),
                stats.objects,
            );
        }
        let _ = write!(
            out,
            "</table><p class=\"sub\">{} in {} repositor{}",
            bytes(total),
            self.repos.len(),
            if self.repos.len() == 1 { "y" } else { "ies" },
        );
        if self.stale_after > 0 {
            let _ = write!(
                out,
                "; red: no snapshot for more than {}",
                duration(self.stale_after)
            );
            if stale > 0 {
                let _ = write!(out, " (<span class=\"bad\">{stale}</span>)");
            }
        }
        if !self.everything {
            out.push_str("; only the repositories you may read");
        }
        out.push_str(".</p>");
    }
}

/// Share of a budget past which it is shown red.
const BUDGET_WARN_PERCENT: u64 = 90;

fn render_budgets(out: &mut String, budgets: &[Budget]) {
    if budgets.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Quotas</h2><table><tr><th>for</th><th>rule</th><th class=\"n\">used</th>\
         <th class=\"n\">of</th></tr>",
    );
    for b in budgets {
        let percent = (u128::from(b.used) * 100 / u128::from(b.limit.max(1))) as u64;
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td><code>{}</code></td><td class=\"n\">{} ({percent}%)</td>\
             <td class=\"n\">{}</td></tr>",
            if percent >= BUDGET_WARN_PERCENT {
                " class=\"bad\""
            } else {
                ""
            },
            escape(&b.group.to_string()),
            escape(&b.rule),
            bytes(b.used),
            bytes(b.limit),
        );
    }
    out.push_str("</table>");
}

fn render_mirror(out: &mut String, mirror: &MirrorSummary, now: u64) {
    out.push_str("<h2>Mirror</h2><p>");
    if mirror.backlog_files == 0 {
        out.push_str("Up to date");
    } else {
        let _ = write!(
            out,
            "<b>{} file(s), {}</b> waiting",
            mirror.backlog_files,
            bytes(mirror.backlog_bytes)
        );
        if let Some(since) = mirror.waiting_since {
            let _ = write!(
                out,
                ", the oldest for {}",
                duration(now.saturating_sub(since))
            );
        }
    }
    if !mirror.compared {
        out.push_str("; still comparing with the bucket");
    }
    out.push_str(".</p>");
    if mirror.failed_files > 0 {
        let _ = write!(
            out,
            "<p class=\"bad\">{} file(s) could not be copied: see the log.</p>",
            mirror.failed_files
        );
    }
    if let Some(error) = &mirror.last_error {
        let _ = write!(out, "<p class=\"bad\">Last error: {}</p>", escape(error));
    }
}

fn render_scrub(out: &mut String, scrub: &ScrubSummary, now: u64) {
    out.push_str("<h2>Scrub</h2><p>");
    match scrub.last_finished {
        Some(t) => {
            let _ = write!(
                out,
                "Last full pass finished {}",
                ago(now.saturating_sub(t))
            );
        }
        None => out.push_str("No full pass yet"),
    }
    if let Some(progress) = scrub.progress {
        let _ = write!(out, "; a pass is {:.0}% done", progress * 100.0);
    }
    out.push_str(".</p>");
    if scrub.damaged.is_empty() {
        out.push_str("<p>No damaged object known.</p>");
        return;
    }
    let _ = write!(
        out,
        "<p class=\"bad\">{} damaged object(s):</p><ul>",
        scrub.damaged.len()
    );
    for place in scrub.damaged.iter().take(MAX_DAMAGED_LISTED) {
        let _ = write!(out, "<li><code>{}</code></li>", escape(place));
    }
    if scrub.damaged.len() > MAX_DAMAGED_LISTED {
        let _ = write!(
            out,
            "<li>and {} more (rest-server scrub --status)</li>",
            scrub.damaged.len() - MAX_DAMAGED_LISTED
        );
    }
    out.push_str("</ul>");
}

fn render_refused(out: &mut String, refused: &[Refusal], now: u64) {
    out.push_str("<h2>Refused logins</h2>");
    if refused.is_empty() {
        out.push_str("<p>None since the server started.</p>");
        return;
    }
    out.push_str(
        "<table><tr><th>from</th><th class=\"n\">attempts</th><th class=\"n\">last</th>\
         <th>why</th></tr>",
    );
    for r in refused {
        let from = r
            .address
            .map_or_else(|| "Unix socket".to_string(), |a| a.to_string());
        let _ = write!(
            out,
            "<tr><td>{from}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            r.attempts,
            ago(now.saturating_sub(r.last)),
            r.reason
        );
    }
    out.push_str("</table>");
}

/// Bytes in binary units, three significant figures.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if value < 10.0 => format!("{value:.2} {}", UNITS[unit]),
        _ if value < 100.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

/// Text made safe inside an element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The machine's name, read once at startup.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this machine".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(repos: Vec<(String, RepoStats)>) -> View {
        View {
            host: "pi<1>".to_string(),
            uptime: Duration::from_secs(90_061),
            now: 1_000_000,
            stale_after: 3 * 86_400,
            user: Some("alice".to_string()),
            everything: true,
            space: Some(Space {
                trash: None,
                free: 3 << 30,
                total: 10 << 30,
            }),
            repos,
            budgets: vec![Budget {
                rule: "/$user/*".into(),
                group: Group {
                    rule: 0,
                    label: "alice".into(),
                },
                used: 95,
                limit: 100,
            }],
            alarms: vec![("alice/laptop".into(), 5, 1)],
            mirror: None,
            scrub: None,
            refused: Some(Vec::new()),
        }
    }

    fn stats(bytes: u64, objects: u64, newest: Option<u64>) -> RepoStats {
        RepoStats {
            bytes,
            objects,
            newest_snapshot: newest,
            snapshots: 1,
            trash_bytes: 0,
        }
    }

    #[test]
    fn shows_each_repository_and_marks_the_stale_ones() {
        let html = view(vec![
            (
                "alice/laptop".into(),
                stats(1536 << 20, 120, Some(1_000_000 - 7200)),
            ),
            ("bob".into(), stats(10, 1, Some(1_000_000 - 5 * 86_400))),
            ("<script>".into(), stats(0, 0, None)),
        ])
        .render();
        assert!(html.contains("rest-server on pi&lt;1&gt;"), "{html}");
        assert!(html.contains("up 1 d 1 h"), "{html}");
        assert!(html.contains("<tr><td>/alice/laptop</td><td class=\"n\">1.50 GiB</td><td class=\"n\">120</td><td class=\"n\">2 h ago</td></tr>"), "{html}");
        assert!(html.contains("<tr class=\"bad\"><td>/bob</td><td class=\"n\">10 B</td><td class=\"n\">1</td><td class=\"n\">5 d ago</td></tr>"), "{html}");
        assert!(
            html.contains("<tr class=\"bad\"><td>/&lt;script&gt;</td>"),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(
            html.contains("7.00 GiB used of 10.0 GiB, <b>3.00 GiB free</b>"),
            "{html}"
        );
        assert!(html.contains("(<span class=\"bad\">2</span>)"), "{html}");
        assert!(
            html.contains(
                "<p class=\"bad\">/alice/laptop: 5 of 6 snapshots deleted in the last 24 hours.</p>"
            ),
            "{html}"
        );
        assert!(html.contains("None since the server started"));
        assert!(html.contains("<tr class=\"bad\"><td>/alice</td><td><code>/$user/*</code></td><td class=\"n\">95 B (95%)</td><td class=\"n\">100 B</td></tr>"), "{html}");
    }

    #[test]
    fn a_user_sees_no_server_wide_sections() {
        let mut v = view(Vec::new());
        v.everything = false;
        v.refused = None;
        let html = v.render();
        assert!(!html.contains("Refused logins"));
        assert!(html.contains("None yet."));
    }

    #[test]
    fn formats_sizes_and_ages() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(200 << 30), "200 GiB");
        assert_eq!(bytes(u64::MAX), "16384 PiB");
        assert_eq!(escape("a&'\""), "a&amp;&#39;&quot;");
    }
}
