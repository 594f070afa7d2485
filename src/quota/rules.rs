//! `--quota-file FILE`: byte budgets per repository, or shared by a tree of
//! repositories (a user's).
//!
//! One rule per line, `REPOSITORY SIZE`; `#` starts a comment:
//!
//! ```text
//! /alice/laptop  50G        # one repository
//! /alice/*       200G       # alice's repositories together
//! /$user/*       100G       # each user's repositories together
//! *              80G        # every repository, each on its own
//! /backups/*     unlimited  # no budget of its own
//! ```
//!
//! - REPOSITORY is `*` (each repository on its own), `/path` (exactly that
//!   one) or `/path/*` (that one and every one below it, counted together).
//!   `$user` stands for any one folder name, each with its own budget: with
//!   `--private-repos` the user's folder.
//! - SIZE is bytes, or a number with `K`, `M`, `G` or `T` (1024-based; `GiB`
//!   and `GB` are read the same), or `unlimited`.
//!
//! Every rule that covers a repository applies: an upload must fit in each
//! of them (and under `--max-size`). Bad lines are skipped with a warning.

use std::fmt;

/// A budget an upload must fit in: the rule (its index, for counting) and
/// the group of repositories it is shared by, by label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Group {
    pub(crate) rule: usize,
    pub(crate) label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Name(String),
    /// `$user`: any one folder name.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `*`: each repository on its own.
    Each,
    Exactly(Vec<Segment>),
    AndBelow(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: Pattern,
    /// None: unlimited.
    limit: Option<u64>,
    /// As written, for metrics and the status page.
    text: String,
}

/// The parsed rules, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct QuotaRules {
    rules: Vec<Rule>,
}

impl QuotaRules {
    /// Parses the file; bad lines are skipped and reported as warnings.
    pub(crate) fn parse(text: &str) -> (QuotaRules, Vec<String>) {
        let expected = "`REPOSITORY SIZE` (e.g. `/alice/* 200G`)";
        let (rules, warnings) = crate::runtime::reload::parse_rules(text, expected, |fields| {
            let [repo, size] = fields else {
                return None;
            };
            Pattern::parse(repo)
                .zip(parse_size(size))
                .map(|(pattern, limit)| Rule {
                    pattern,
                    limit,
                    text: (*repo).to_string(),
                })
        });
        (QuotaRules { rules }, warnings)
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The budgets the repository `label` (`alice/laptop`) is in, with
    /// their limits; unlimited rules are left out.
    pub(crate) fn groups(&self, label: &str) -> Vec<(Group, u64)> {
        let segments: Vec<&str> = if label.is_empty() {
            Vec::new()
        } else {
            label.split('/').collect()
        };
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(rule, r)| {
                let limit = r.limit?;
                let label = r.pattern.group(&segments)?;
                Some((Group { rule, label }, limit))
            })
            .collect()
    }

    /// A rule's limit; None when unlimited (or no such rule).
    pub(crate) fn limit(&self, rule: usize) -> Option<u64> {
        self.rules.get(rule)?.limit
    }

    /// How a rule was written (`/$user/*`).
    pub(crate) fn describe(&self, rule: usize) -> &str {
        self.rules.get(rule).map_or("?", |r| r.text.as_str())
    }
}

impl Pattern {
    fn parse(text: &str) -> Option<Pattern> {
        if text == "*" {
            return Some(Pattern::Each);
        }
        let path = text.strip_prefix('/')?;
        let (path, below) = match path.strip_suffix("/*") {
            Some(p) => (p, true),
            None if path == "*" => ("", true),
            None => (path, false),
        };
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "$user" => Some(Segment::Any),
                "." | ".." => None,
                s if s.contains('*') || s.contains('$') => None,
                s => Some(Segment::Name(s.to_string())),
            })
            .collect::<Option<Vec<_>>>()?;
        if segments.len() > crate::repo::MAX_REPO_DEPTH {
            return None;
        }
        Some(if below {
            Pattern::AndBelow(segments)
        } else {
            Pattern::Exactly(segments)
        })
    }

    /// The group a repository is in under this pattern (the label of the
    /// folder the budget is shared below), if the pattern covers it.
    fn group(&self, repo: &[&str]) -> Option<String> {
        let prefix_matches = |pattern: &[Segment]| {
            repo.len() >= pattern.len()
                && pattern.iter().zip(repo).all(|(p, r)| match p {
                    Segment::Any => true,
                    Segment::Name(name) => name == r,
                })
        };
        match self {
            Pattern::Each => Some(repo.join("/")),
            Pattern::Exactly(p) => {
                (p.len() == repo.len() && prefix_matches(p)).then(|| repo.join("/"))
            }
            Pattern::AndBelow(p) => prefix_matches(p).then(|| repo[..p.len()].join("/")),
        }
    }
}

/// `200G`, `50GiB`, `1024`, `unlimited` (None).
fn parse_size(text: &str) -> Option<Option<u64>> {
    if text.eq_ignore_ascii_case("unlimited") {
        return Some(None);
    }
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let unit = unit.to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift).map(Some)
}

/// The `--quota-file`, reloaded while the server runs.
impl crate::runtime::reload::Reloadable for QuotaRules {
    const WHAT: &'static str = "quota file";
    type Source = std::path::PathBuf;
    type Error = std::io::Error;

    fn load(
        source: &std::path::PathBuf,
    ) -> std::io::Result<crate::runtime::reload::Loaded<QuotaRules>> {
        crate::runtime::reload::load_rules(source, QuotaRules::parse)
    }

    fn summary(&self) -> String {
        format!("{} rule(s)", self.len())
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(rules: &QuotaRules, label: &str) -> Vec<(usize, String, u64)> {
        rules
            .groups(label)
            .into_iter()
            .map(|(g, limit)| (g.rule, g.label, limit))
            .collect()
    }

    #[test]
    fn every_rule_that_covers_a_repository_applies() {
        let (rules, warnings) = QuotaRules::parse(
            "# budgets\n\
             /alice/laptop 50G   # one\n\
             /alice/* 200GiB\n\
             /$user/* 100g\n\
             * 1024\n\
             /backups/* unlimited\n\
             /x 12Q\n\
             /a/*/b 1G\n\
             /../x 1G\n\
             /a/b/c 1G\n\
             lonely\n",
        );
        assert_eq!(rules.len(), 5);
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        assert!(warnings[0].starts_with("line 7"));
        assert_eq!(
            groups(&rules, "alice/laptop"),
            vec![
                (0, "alice/laptop".into(), 50 << 30),
                (1, "alice".into(), 200 << 30),
                (2, "alice".into(), 100 << 30),
                (3, "alice/laptop".into(), 1024),
            ]
        );
        assert_eq!(
            groups(&rules, "bob"),
            vec![(2, "bob".into(), 100 << 30), (3, "bob".into(), 1024)]
        );
        // The root repository is in no user's tree; unlimited rules count nothing.
        assert_eq!(groups(&rules, ""), vec![(3, "".into(), 1024)]);
        assert_eq!(groups(&rules, "backups/pc").len(), 2);
        assert_eq!(rules.describe(2), "/$user/*");
        assert_eq!(
            Group {
                rule: 1,
                label: "alice".into()
            }
            .to_string(),
            "/alice"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(Some(0)));
        assert_eq!(parse_size("2K"), Some(Some(2048)));
        assert_eq!(parse_size("3MB"), Some(Some(3 << 20)));
        assert_eq!(parse_size("1t"), Some(Some(1 << 40)));
        assert_eq!(parse_size("Unlimited"), Some(None));
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("1.5G"), None);
    }

    #[test]
    fn whole_server_and_exact_patterns() {
        let (rules, _) = QuotaRules::parse("/* 10\n/ 5\n/$user 7\n");
        assert_eq!(groups(&rules, "a/b"), vec![(0, "".into(), 10)]);
        assert_eq!(
            groups(&rules, ""),
            vec![(0, "".into(), 10), (1, "".into(), 5)]
        );
        assert_eq!(
            groups(&rules, "a"),
            vec![(0, "".into(), 10), (2, "a".into(), 7)]
        );
    }
}
