//! Byte budgets: `--max-size` for the whole data directory, and the
//! `--quota-file`'s per repository or per tree of repositories (see
//! [`rules`]).
//!
//! Counted once at startup (the file's budgets from [`Usage`], again after
//! each reload of the file), then kept up to date on the event-loop thread
//! only (hence `Cell`): uploads reserve bytes as they stream, deletes give
//! them back. An upload that would pass any budget is refused with 507,
//! before writing when its length is declared, while streaming otherwise.

pub(crate) mod deletes;
pub(crate) mod rules;
pub(crate) mod usage;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::quota::usage::Usage;
use crate::runtime::reload::Watched;
use rules::{Group, QuotaRules};

pub(crate) struct Quota {
    limit: Option<u64>,
    used: Cell<u64>,
    budgets: Option<Budgets>,
}

/// The quota file's budgets and the bytes used in each.
struct Budgets {
    rules: Rc<Watched<QuotaRules>>,
    usage: Rc<Usage>,
    counted: RefCell<Counted>,
    /// Bytes of uploads in progress, per repository (by label): counted
    /// again with what is stored when the rules are reloaded.
    in_flight: RefCell<BTreeMap<String, u64>>,
}

/// Bytes used per group, stored and reserved, for one version of the rules.
#[derive(Debug, Default)]
struct Counted {
    /// None before the first count.
    version: Option<u64>,
    used: BTreeMap<Group, u64>,
}

/// Which budget an upload would pass, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Over {
    MaxSize,
    /// A quota file rule (as written) and the repository or tree it covers.
    Rule {
        rule: String,
        group: String,
        limit: u64,
    },
}

impl fmt::Display for Over {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Over::MaxSize => f.write_str("--max-size would be exceeded"),
            Over::Rule { rule, group, limit } => {
                write!(
                    f,
                    "the quota of {group} ({rule} {limit} bytes) would be exceeded"
                )
            }
        }
    }
}

/// One budget as the status page and the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Budget {
    /// The rule as written (`/$user/*`).
    pub(crate) rule: String,
    /// The repository or tree it is shared by (shown as `/alice`).
    pub(crate) group: Group,
    pub(crate) used: u64,
    pub(crate) limit: u64,
}

impl Quota {
    pub(crate) fn new(limit: Option<u64>, used: u64) -> Quota {
        Quota {
            limit,
            used: Cell::new(used),
            budgets: None,
        }
    }

    /// Adds the `--quota-file`'s budgets, counted from `usage`.
    pub(crate) fn with_rules(mut self, rules: Rc<Watched<QuotaRules>>, usage: Rc<Usage>) -> Quota {
        self.budgets = Some(Budgets {
            rules,
            usage,
            counted: RefCell::default(),
            in_flight: RefCell::default(),
        });
        self
    }

    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.get()
    }

    /// Whether `bytes` more for the repository `repo` (by label) would pass
    /// a budget (checked against a declared Content-Length before anything
    /// is written).
    pub(crate) fn check(&self, repo: &str, bytes: u64) -> Result<(), Over> {
        self.check_max_size(bytes)?;
        if let Some(budgets) = &self.budgets {
            let (rules, groups) = budgets.groups(repo);
            budgets.check(&rules, &groups, bytes)?;
        }
        Ok(())
    }

    fn check_max_size(&self, bytes: u64) -> Result<(), Over> {
        match self.limit {
            Some(limit) if self.used.get().saturating_add(bytes) > limit => Err(Over::MaxSize),
            _ => Ok(()),
        }
    }

    /// Gives back the space of a file deleted from `repo`.
    pub(crate) fn release(&self, repo: &str, bytes: u64) {
        self.used.set(self.used.get().saturating_sub(bytes));
        if let Some(budgets) = &self.budgets {
            let (_, groups) = budgets.groups(repo);
            budgets.add(&groups, bytes, false);
        }
    }

    /// Every budget with bytes in it, for the status page and metrics.
    pub(crate) fn budgets(&self) -> Vec<Budget> {
        let Some(budgets) = &self.budgets else {
            return Vec::new();
        };
        let rules = budgets.refresh();
        let counted = budgets.counted.borrow();
        counted
            .used
            .iter()
            .filter_map(|(group, used)| {
                let limit = rules.limit(group.rule)?;
                Some(Budget {
                    rule: rules.describe(group.rule).to_string(),
                    group: group.clone(),
                    used: *used,
                    limit,
                })
            })
            .collect()
    }

    /// The budgets the repository `repo` is in.
    pub(crate) fn budgets_of(&self, repo: &str) -> Vec<Group> {
        self.budgets.as_ref().map_or_else(Vec::new, |budgets| {
            budgets.groups(repo).1.into_iter().map(|(g, _)| g).collect()
        })
    }

    /// Whether a quota file gives budgets (their metrics are shown only then).
    pub(crate) fn has_budgets(&self) -> bool {
        self.budgets.is_some()
    }
}

impl Budgets {
    /// The rules in use, with the bytes counted again if they changed.
    fn refresh(&self) -> Rc<QuotaRules> {
        let rules = self.rules.get();
        let version = self.rules.version();
        let mut counted = self.counted.borrow_mut();
        if counted.version != Some(version) {
            let mut used = BTreeMap::new();
            let stored =
                (self.usage.snapshot().into_iter()).map(|(l, s)| (l, s.bytes + s.trash_bytes));
            let in_flight = self.in_flight.borrow().clone();
            for (label, bytes) in stored.chain(in_flight) {
                for (group, _) in rules.groups(&label) {
                    *used.entry(group).or_default() += bytes;
                }
            }
            *counted = Counted {
                version: Some(version),
                used,
            };
        }
        rules
    }

    /// The budgets of `repo`; none for a repository the usage cannot track
    /// (past [`crate::quota::usage::MAX_REPOS`]): its bytes could not be counted
    /// again after a reload.
    fn groups(&self, repo: &str) -> (Rc<QuotaRules>, Vec<(Group, u64)>) {
        let rules = self.refresh();
        let groups = match self.usage.can_track(repo) {
            true => rules.groups(repo),
            false => Vec::new(),
        };
        (rules, groups)
    }

    /// Adds (or, `grow` false, takes away) `bytes` of an upload in progress.
    fn in_flight(&self, repo: &str, bytes: u64, grow: bool) {
        let mut in_flight = self.in_flight.borrow_mut();
        match in_flight.get_mut(repo) {
            Some(held) if grow => *held += bytes,
            Some(held) => {
                *held = held.saturating_sub(bytes);
                if *held == 0 {
                    in_flight.remove(repo);
                }
            }
            None if grow && bytes > 0 => {
                in_flight.insert(repo.to_string(), bytes);
            }
            None => {}
        }
    }

    fn check(&self, rules: &QuotaRules, groups: &[(Group, u64)], bytes: u64) -> Result<(), Over> {
        let counted = self.counted.borrow();
        for (group, limit) in groups {
            let used = counted.used.get(group).copied().unwrap_or(0);
            if used.saturating_add(bytes) > *limit {
                return Err(Over::Rule {
                    rule: rules.describe(group.rule).to_string(),
                    group: group.to_string(),
                    limit: *limit,
                });
            }
        }
        Ok(())
    }

    /// Adds (or, `grow` false, takes away) `bytes` in each group.
    fn add(&self, groups: &[(Group, u64)], bytes: u64, grow: bool) {
        let mut counted = self.counted.borrow_mut();
        for (group, _) in groups {
            // Per chunk: no allocation once the group is known.
            let used = match counted.used.get_mut(group) {
                Some(used) => used,
                None => counted.used.entry(group.clone()).or_default(),
            };
            *used = if grow {
                used.saturating_add(bytes)
            } else {
                used.saturating_sub(bytes)
            };
        }
    }
}

/// Bytes an upload in progress has taken from the budgets. Dropped without
/// [`Reservation::keep`], it gives them back: an upload that fails or is
/// abandoned leaves the counts as they were.
pub(crate) struct Reservation {
    quota: Rc<Quota>,
    repo: String,
    bytes: u64,
    /// The quota file's budgets this upload counts in, for the version of
    /// the rules they came from (looked up again after a reload).
    groups: Vec<(Group, u64)>,
    version: Option<u64>,
}

impl Reservation {
    pub(crate) fn new(quota: Rc<Quota>, repo: String) -> Reservation {
        Reservation {
            quota,
            repo,
            bytes: 0,
            groups: Vec::new(),
            version: None,
        }
    }

    /// Looks the budgets up again after a reload of the rules (which
    /// counted this upload's bytes in flight again).
    fn update_groups(&mut self) {
        let Some(budgets) = &self.quota.budgets else {
            return;
        };
        let version = Some(budgets.rules.version());
        if self.version != version {
            self.groups = budgets.groups(&self.repo).1;
            self.version = version;
        }
    }

    /// Takes `bytes` more, or says which budget that would pass.
    pub(crate) fn grow(&mut self, bytes: u64) -> Result<(), Over> {
        self.quota.check_max_size(bytes)?;
        self.update_groups();
        if let Some(budgets) = &self.quota.budgets {
            budgets.check(&budgets.rules.get(), &self.groups, bytes)?;
            budgets.add(&self.groups, bytes, true);
            budgets.in_flight(&self.repo, bytes, true);
        }
        self.quota.used.set(self.quota.used.get() + bytes);
        self.bytes += bytes;
        Ok(())
    }

    /// The upload is stored: its bytes stay counted (now as stored ones).
    pub(crate) fn keep(mut self) {
        if let Some(budgets) = self.quota.budgets.as_ref() {
            budgets.in_flight(&self.repo, self.bytes, false);
        }
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let bytes = self.bytes;
        self.quota
            .used
            .set(self.quota.used.get().saturating_sub(bytes));
        if bytes == 0 {
            return;
        }
        self.update_groups();
        if let Some(budgets) = &self.quota.budgets {
            budgets.in_flight(&self.repo, bytes, false);
            budgets.add(&self.groups, bytes, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::ObjectType;

    #[test]
    fn reservations_are_returned_unless_kept() {
        let quota = Rc::new(Quota::new(Some(100), 10));
        let mut a = Reservation::new(quota.clone(), String::new());
        assert_eq!(a.grow(60), Ok(()));
        assert_eq!(a.grow(31), Err(Over::MaxSize), "would reach 101");
        assert_eq!(a.grow(30), Ok(()));
        drop(a);
        assert_eq!(quota.used(), 10);
        let mut b = Reservation::new(quota.clone(), String::new());
        assert_eq!(b.grow(90), Ok(()));
        b.keep();
        assert_eq!(quota.used(), 100);
        assert_eq!(quota.check("", 1), Err(Over::MaxSize));
        quota.release("", 50);
        assert_eq!(quota.check("", 50), Ok(()));
    }

    #[test]
    fn no_limit_never_refuses() {
        let quota = Rc::new(Quota::new(None, 0));
        let mut r = Reservation::new(quota.clone(), String::new());
        assert_eq!(r.grow(u64::MAX / 2), Ok(()));
        assert_eq!(quota.check("x", u64::MAX / 4), Ok(()));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_quota_files_budgets_count_stored_and_reserved_bytes() {
        let dir = crate::testing::TempDir::new("quota-rules");
        let file = dir.path().join("quotas");
        std::fs::write(&file, "/alice/* 1000\n* 700\n").unwrap();
        let rules = Watched::<QuotaRules>::load(file.clone()).await.unwrap();
        let usage = Rc::new(Usage::default());
        usage.wrote("alice/laptop", Some(ObjectType::Data), 600);
        usage.wrote("bob", Some(ObjectType::Data), 650);
        let quota = Rc::new(Quota::new(None, 0).with_rules(rules.clone(), usage.clone()));
        // alice's tree has 400 left, and each repository at most 700.
        assert_eq!(quota.check("alice/laptop", 100), Ok(()));
        let over = quota.check("alice/laptop", 101).unwrap_err();
        assert_eq!(
            over.to_string(),
            "the quota of /alice/laptop (* 700 bytes) would be exceeded"
        );
        assert!(quota.check("alice/desktop", 401).is_err());
        assert_eq!(quota.check("bob", 50), Ok(()));
        assert!(quota.check("bob", 51).is_err());
        // Two uploads at once share what is left.
        let mut a = Reservation::new(quota.clone(), "alice/desktop".into());
        let mut b = Reservation::new(quota.clone(), "alice/phone".into());
        assert_eq!(a.grow(300), Ok(()));
        assert!(matches!(b.grow(101), Err(Over::Rule { ref group, .. }) if group == "/alice"));
        assert_eq!(b.grow(100), Ok(()));
        drop(b);
        a.keep();
        usage.wrote("alice/desktop", Some(ObjectType::Data), 300);
        let shown = quota.budgets();
        assert!(shown.contains(&Budget {
            rule: "/alice/*".into(),
            group: Group {
                rule: 0,
                label: "alice".into()
            },
            used: 900,
            limit: 1000
        }));
        // A delete gives back.
        quota.release("alice/laptop", 600);
        usage.deleted("alice/laptop", Some(ObjectType::Data), 600);
        assert_eq!(quota.check("alice/desktop", 400), Ok(()));
        // Reloaded mid-upload: counted again from what is stored and what
        // is in flight, before the paused upload sends another piece.
        let mut c = Reservation::new(quota.clone(), "alice/desktop".into());
        assert_eq!(c.grow(350), Ok(()));
        std::fs::write(&file, "/alice/* 1000\n").unwrap();
        rules.reload().await;
        assert_eq!(quota.check("alice/x", 350), Ok(()));
        assert!(quota.check("alice/x", 351).is_err());
        assert_eq!(c.grow(1), Ok(()));
        // 300 stored and 351 in flight.
        assert_eq!(quota.check("alice/x", 349), Ok(()));
        assert!(quota.check("alice/x", 350).is_err());
        drop(c);
        assert_eq!(quota.check("alice/x", 700), Ok(()));
    }
}
