//! The crate's shape, read from its source: the layers that src/lib.rs lists
//! are kept (a module imports only modules of the groups after its own), no
//! files import each other in a circle, and docs/architecture.md's module map
//! names every source file and no other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// src/lib.rs's `mod` lines in groups: a group ends at a blank line.
fn layers(lib: &str) -> Vec<Vec<String>> {
    let mut groups = vec![Vec::new()];
    for line in lib.lines().map(str::trim) {
        if line.is_empty() {
            if !groups.last().unwrap().is_empty() {
                groups.push(Vec::new());
            }
            continue;
        }
        let name = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'));
        if let Some(name) = name {
            groups.last_mut().unwrap().push(name.to_string());
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// Every `.rs` file under `dir`, as paths relative to src/.
fn sources(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(base).unwrap().to_path_buf());
        }
    }
}

/// The code of a file without its comments (doc links are no imports).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a file: `store/s3/mod.rs` is `store::s3`.
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The paths a file names: `crate::a::b::c`, `super::x`, `self::y`, each
/// made absolute (a list of segments from the crate's root).
fn named_paths(file: &Path, text: &str) -> Vec<Vec<String>> {
    let here = module_of(file);
    // A file's `super` is its parent module; mod.rs is its folder's module.
    let mut found = Vec::new();
    let bytes = text.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(start) {
            let begin = from + at;
            from = begin + start.len();
            // Only a path's first segment (not `foo::crate::x`).
            if begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_')
                || begin > 1 && &text[begin - 2..begin] == "::"
            {
                continue;
            }
            let rest: String = text[from..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segments: Vec<String> = rest
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            // Inside an inline `mod tests {` (at a line's start, to the end
            // of the file, as test modules are), `super` is the file itself.
            let mut here = here.clone();
            if let Some(inline) = inline_module(text, begin) {
                here.push(inline);
            }
            let mut path = match start {
                "crate::" => Vec::new(),
                "super::" => here[..here.len().saturating_sub(1)].to_vec(),
                _ => here.clone(),
            };
            let mut segments = segments.into_iter().peekable();
            while start == "super::" && segments.next_if(|s| s == "super").is_some() {
                path.pop();
            }
            path.extend(segments);
            // `use super::{a, b::C};` names `a` and `b`, not the parent.
            let after = &text[from + rest.len()..];
            if (rest.ends_with("::") || rest.is_empty())
                && let Some(group) = after.strip_prefix('{')
            {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let first = item.split("::").next().unwrap_or(item);
                    let first = first.split_whitespace().next().unwrap_or(first);
                    let mut named = path.clone();
                    if first != "self" {
                        named.push(first.to_string());
                    }
                    found.push(named);
                }
                continue;
            }
            found.push(path);
        }
    }
    found
}

/// The inline module (`mod tests {` at a line's start, to the end of the
/// file) that `at` is in.
fn inline_module(text: &str, at: usize) -> Option<String> {
    let mut found = None;
    let mut from = 0;
    while let Some(pos) = text[from..].find('\n') {
        let begin = from + pos + 1;
        if begin > at {
            break;
        }
        let line = text[begin..].lines().next().unwrap_or("");
        let line = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(" {")) {
            found = Some(name.to_string());
        }
        from = begin;
    }
    found
}

/// The source file a path leads into: the longest prefix of it that is a
/// file or a folder's mod.rs.
fn file_of(path: &[String], files: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| {
        let joined = path[..n].join("/");
        [format!("{joined}.rs"), format!("{joined}/mod.rs")]
            .into_iter()
            .map(PathBuf::from)
            .find(|f| files.contains(f))
    })
}

struct Crate {
    files: BTreeSet<PathBuf>,
    /// Each file, and the files it names.
    imports: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

fn read_crate() -> Crate {
    let mut list = Vec::new();
    sources(&src(), &src(), &mut list);
    let files: BTreeSet<PathBuf> = list.into_iter().collect();
    let mut imports = BTreeMap::new();
    for file in &files {
        let text = code(&std::fs::read_to_string(src().join(file)).unwrap());
        let targets = named_paths(file, &text)
            .iter()
            .filter_map(|path| file_of(path, &files))
            .filter(|target| target != file)
            .collect();
        imports.insert(file.clone(), targets);
    }
    Crate { files, imports }
}

#[test]
fn imports_only_point_down_the_layers_of_lib_rs() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let layers = layers(&lib);
    assert!(
        layers.len() > 5,
        "src/lib.rs lists its modules in groups: {layers:?}"
    );
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, group)| group.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let krate = read_crate();
    let mut wrong = Vec::new();
    for (file, targets) in &krate.imports {
        let top = module_of(file)[0].clone();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(&mine) = layer_of.get(top.as_str()) else {
            wrong.push(format!("{} is in no group of src/lib.rs", file.display()));
            continue;
        };
        for target in targets {
            let other = module_of(target)[0].clone();
            if other == top || other == "lib" {
                continue;
            }
            let theirs = layer_of[other.as_str()];
            if theirs <= mine {
                wrong.push(format!(
                    "{} imports {} (group {theirs}, not below its own group {mine})",
                    file.display(),
                    target.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let krate = read_crate();
    // Depth-first; a file met again while still on the path closes a circle.
    fn visit(
        file: &PathBuf,
        krate: &Crate,
        path: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
        circles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|f| f == file) {
            let names: Vec<String> = path[at..].iter().map(|f| f.display().to_string()).collect();
            circles.push(format!("{} -> {}", names.join(" -> "), file.display()));
            return;
        }
        if !done.insert(file.clone()) {
            return;
        }
        path.push(file.clone());
        for next in &krate.imports[file] {
            visit(next, krate, path, done, circles);
        }
        path.pop();
    }
    let mut circles = Vec::new();
    let mut done = BTreeSet::new();
    for file in &krate.files {
        visit(file, &krate, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "circles of imports:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_checks_see_a_wrong_import_and_a_circle() {
    // The parser on a made-up crate: `store` naming `http` is found, as is
    // a circle through `super`.
    let files: BTreeSet<PathBuf> = ["http/mod.rs", "http/api.rs", "store/mod.rs", "store/fs.rs"]
        .iter()
        .map(PathBuf::from)
        .collect();
    let named = named_paths(
        Path::new("store/fs.rs"),
        &code(
            "use crate::http::api::Call; // crate::config::Nope\nuse super::Store;\nuse super::{fs, Op};",
        ),
    );
    let targets: Vec<PathBuf> = named.iter().filter_map(|p| file_of(p, &files)).collect();
    assert_eq!(
        targets,
        [
            PathBuf::from("http/api.rs"),
            PathBuf::from("store/mod.rs"),
            PathBuf::from("store/fs.rs"),
            PathBuf::from("store/mod.rs")
        ]
    );
    let lib = "mod http;\n\nmod store;\n";
    assert_eq!(
        layers(lib),
        [vec!["http".to_string()], vec!["store".to_string()]]
    );
}

#[test]
fn the_module_map_names_every_source_file_and_no_other() {
    let doc = std::fs::read_to_string(src().join("../docs/architecture.md")).unwrap();
    let start = doc
        .find("## Module map")
        .expect("docs/architecture.md has a Module map");
    let map = &doc[start..];
    let map = map[2..].find("\n## ").map_or(map, |end| &map[..end + 2]);
    // A table row's first cell: | `path/file.rs` | what it is |
    let named: BTreeSet<PathBuf> = map
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(path, _)| PathBuf::from(path))
        .collect();
    let mut list = Vec::new();
    sources(&src(), &src(), &mut list);
    let files: BTreeSet<PathBuf> = list.into_iter().collect();
    let missing: Vec<_> = files.difference(&named).collect();
    let stale: Vec<_> = named.difference(&files).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md's module map lacks {missing:?} and names files that are not there: {stale:?}"
    );
}
