//! JSON files read in tests without a JSON parser among the
//! dev-dependencies: python3 flattens the document into one line per leaf,
//! which the test looks up by path (the container image's archive:
//! tests/container.rs).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A JSON document as python3 flattens it: each leaf's path of keys and
/// indexes joined by `.`, and its value as JSON (`"text"`, `3`, `null`, `{}`
/// or `[]` when empty). A key with a `.` in it (an OCI label's name) is
/// found by its whole path; only [`Json::keys`] splits at the dots.
pub struct Json(pub BTreeMap<String, String>);

/// Prints each leaf of the JSON file argv[1] as PATH<TAB>VALUE.
const FLATTEN: &str = r#"
import json, sys
def walk(path, value):
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            walk(path + [key], inner)
    elif isinstance(value, list) and value:
        for index, inner in enumerate(value):
            walk(path + [str(index)], inner)
    else:
        print(".".join(path) + "\t" + json.dumps(value))
walk([], json.load(open(sys.argv[1])))
"#;

impl Json {
    /// The document in `file`; fails the test if python3 cannot read it.
    pub fn read(file: &Path) -> Json {
        let out = Command::new("python3")
            .args(["-c", FLATTEN])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let leaves = text.lines().map(|line| {
            let (path, value) = line.split_once('\t').unwrap();
            (path.to_string(), value.to_string())
        });
        Json(leaves.collect())
    }

    /// The string at `path`; None if there is none (or it is no string).
    pub fn string(&self, path: &str) -> Option<String> {
        let value = self.0.get(path)?;
        let inner = value.strip_prefix('"')?.strip_suffix('"')?;
        Some(inner.to_string())
    }

    /// The string at `path`, which must be there.
    pub fn must(&self, path: &str) -> String {
        self.string(path)
            .unwrap_or_else(|| panic!("no string at {path} in {:#?}", self.0))
    }

    /// The strings of the list at `path` (empty if there is none).
    pub fn strings(&self, path: &str) -> Vec<String> {
        (0..)
            .map_while(|i| self.string(&format!("{path}.{i}")))
            .collect()
    }

    /// How many items the list at `path` has.
    pub fn len(&self, path: &str) -> usize {
        (0..)
            .take_while(|i| {
                let item = format!("{path}.{i}");
                self.0.keys().any(|k| {
                    k.strip_prefix(&item)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
                })
            })
            .count()
    }

    /// The keys of the object at `path` (keys without a `.` in them).
    pub fn keys(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}.");
        let mut keys: Vec<String> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| rest.split('.').next().unwrap().to_string())
            .collect();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::{TempDir, require_tool};

    #[test]
    fn leaves_are_found_by_their_path() {
        if !require_tool("python3", "leaves_are_found_by_their_path") {
            return;
        }
        let dir = TempDir::new("json");
        let file = dir.path().join("doc.json");
        std::fs::write(
            &file,
            r#"{"a": {"b": ["x", "y"], "org.label": "v", "ports": {"8000/tcp": {}}},
                "list": [{"n": 1}, {"n": 2}], "none": null, "empty": []}"#,
        )
        .unwrap();
        let json = Json::read(&file);
        assert_eq!(json.strings("a.b"), ["x", "y"]);
        assert_eq!(json.must("a.org.label"), "v");
        assert_eq!(json.keys("a.ports"), ["8000/tcp"]);
        assert_eq!(json.len("list"), 2);
        assert_eq!(json.len("a.b"), 2);
        assert_eq!(json.0["none"], "null");
        assert_eq!(json.0["empty"], "[]");
        assert_eq!(json.string("list.0.n"), None, "a number is no string");
    }
}
