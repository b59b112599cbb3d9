//! The layers of `src/`, checked: every `crate::` path in the code of a
//! module names a module of its own layer or of one below it, never one
//! above. With one total order and no upward edge, there is no cycle
//! between layers either.
//!
//! The order is written once, in [`LAYERS`]. A reference counts where code
//! names it: `use crate::a::b`, `crate::a::f()`, `use crate::{a, b::c}`,
//! and a name the crate root re-exports (`crate::Sandbox` counts as a use
//! of the layer that defines it). Comments are not code: an intra-doc link
//! to a higher layer is how a lower layer says who uses it. `super::` stays
//! within a folder, so it is not checked.
//!
//! It also keeps `src/sys/raw.rs`, the wrappers that code after `fork`
//! calls, free of the crate's other modules and of what allocates or locks.
//!
//! Run it with `cargo test --test it layers::`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, top to bottom: the first segment of a module path under
/// `crate::` (a folder of `src/`, or a file of it), and `root` for the
/// crate root (`lib.rs` and the top-level conveniences it re-exports).
/// A module may use its own layer and those after it in this list.
const LAYERS: &[(&str, &str)] = &[
    (
        "root",
        "lib.rs, fixtures.rs, helpers.rs: the crate root and re-exports",
    ),
    ("check", "check(): probes that build sandboxes and networks"),
    ("net", "networks of sandboxes, link shapes and impairment"),
    ("sandbox", "the public Sandbox, isolate_test, kept_command"),
    ("run", "a run seen from the test process, and its output"),
    (
        "setup",
        "plan, host view, layers on disk, id maps, limits, seccomp, lifeline",
    ),
    ("diagnose", "hints for errnos, where a process is stuck"),
    ("child", "code that runs after fork or clone"),
    ("fork", "what the test process prepares before a fork"),
    ("proto", "everything that crosses a process boundary"),
    ("error", "the crate's error type"),
    ("sys", "system calls"),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rank(layer: &str) -> usize {
    LAYERS
        .iter()
        .position(|(name, _)| *name == layer)
        .unwrap_or_else(|| panic!("layer {layer:?} is not in LAYERS"))
}

/// The layer a file under `src/` belongs to.
fn layer_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
    let first = parts.next().unwrap().into_owned();
    if rel.components().count() > 1 {
        return first;
    }
    match first.trim_end_matches(".rs") {
        "lib" | "fixtures" | "helpers" => "root".into(),
        module => module.into(),
    }
}

/// The library's source files (not `src/bin/`, which is a user of the
/// public API like any other).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() != "bin" {
                files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: every line without its `//` comment (doc comments
/// included). String literals holding `//` are rare enough in this crate
/// not to matter; one that did would only hide a reference, never make
/// one up.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first segments of the paths after each `crate::`: `a` for
/// `crate::a::b`, `a` and `b` for `crate::{a::x, b}`.
fn referenced(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(is_ident) {
            continue; // `hermetic_crate::` and the like
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let mut depth = 0;
            let mut item = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !item.is_empty() {
                            out.push(std::mem::take(&mut item));
                        }
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start {
                    if is_ident(c) {
                        item.push(c);
                    } else if !item.is_empty() {
                        out.push(std::mem::take(&mut item));
                        at_start = false;
                    }
                }
            }
            if !item.is_empty() {
                out.push(item);
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

/// What the crate root re-exports, by name, with the layer that defines
/// it (from `pub use a::...::{X, Y}` lines of lib.rs); items lib.rs
/// defines itself are the root's.
fn root_names() -> BTreeMap<String, String> {
    let lib = code(&fs::read_to_string(src().join("lib.rs")).unwrap());
    let mut names = BTreeMap::new();
    let mut statement = String::new();
    for line in lib.lines() {
        let line = line.trim();
        if statement.is_empty() && !line.starts_with("pub use ") {
            continue;
        }
        statement.push_str(line);
        statement.push(' ');
        if !line.ends_with(';') {
            continue;
        }
        let path = statement["pub use ".len()..].trim().trim_end_matches(';');
        let module = path.split("::").next().unwrap().trim().to_owned();
        let last = path.rsplit("::").next().unwrap();
        for name in last
            .trim_matches(|c| c == '{' || c == '}' || c == ' ')
            .split(',')
        {
            let name = name.trim();
            if !name.is_empty() {
                names.insert(name.to_owned(), module.clone());
            }
        }
        statement.clear();
    }
    names
}

/// The layer a `crate::NAME` reference lands in.
fn layer_named(name: &str, roots: &BTreeMap<String, String>) -> String {
    if LAYERS.iter().any(|(layer, _)| *layer == name) {
        return name.to_owned();
    }
    match name {
        "fixtures" | "helpers" => "root".to_owned(),
        _ => match roots.get(name) {
            Some(module) if module == "fixtures" || module == "helpers" => "root".to_owned(),
            Some(module) => module.clone(),
            // Defined in lib.rs itself (`__fuzz`, `__result_channel_fd`).
            None => "root".to_owned(),
        },
    }
}

/// Every (file, layer it uses) edge that points up.
fn upward_edges() -> Vec<(String, String, String)> {
    let roots = root_names();
    let mut all = Vec::new();
    files(&src(), &mut all);
    all.sort();
    let mut up = Vec::new();
    for file in all {
        let own = layer_of(&file);
        let text = fs::read_to_string(&file).unwrap();
        let mut seen = Vec::new();
        for name in referenced(&code(&text)) {
            let target = layer_named(&name, &roots);
            if rank(&target) < rank(&own) && !seen.contains(&target) {
                seen.push(target.clone());
                let rel = file.strip_prefix(src()).unwrap().display().to_string();
                up.push((rel, target, name));
            }
        }
    }
    up
}

#[test]
fn every_folder_of_src_is_a_layer() {
    let mut all = Vec::new();
    files(&src(), &mut all);
    for file in all {
        let layer = layer_of(&file);
        assert!(
            LAYERS.iter().any(|(name, _)| *name == layer),
            "{} is in no layer: add its folder to LAYERS in tests/it/layers.rs",
            file.display()
        );
    }
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let up = upward_edges();
    let order: Vec<&str> = LAYERS.iter().map(|(name, _)| *name).collect();
    assert!(
        up.is_empty(),
        "upward edges (layers, top to bottom: {}):\n{}",
        order.join(" > "),
        up.iter()
            .map(|(file, layer, name)| format!("  src/{file} uses {layer} (crate::{name})"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_wrappers_for_after_fork_use_nothing_that_allocates_or_locks() {
    let path = src().join("sys/raw.rs");
    let text = code(&fs::read_to_string(&path).unwrap());
    assert!(
        referenced(&text).is_empty() && !text.contains("super::"),
        "src/sys/raw.rs must use no other module of the crate"
    );
    for word in [
        "String",
        "Vec",
        "vec!",
        "Box",
        "format!",
        "to_owned",
        "to_string",
        "collect",
        "CString",
        "Error::new",
        "Error::other",
        "lock(",
        "Mutex",
        "RwLock",
        "OnceLock",
        "thread_local",
        "Rc<",
        "Arc<",
        "std::fs",
        "std::env",
    ] {
        for (n, line) in text.lines().enumerate() {
            assert!(
                !line.contains(word),
                "src/sys/raw.rs:{}: {word}: code after fork may call everything here, \
                 which must neither allocate nor lock; put it in src/sys/mod.rs",
                n + 1
            );
        }
    }
}

#[test]
fn the_reference_reader_reads_groups_and_skips_comments() {
    let text = "use crate::{a::x, b, c::{d, e}};\n// crate::f\nlet _ = crate::g::h();";
    assert_eq!(referenced(&code(text)), ["a", "b", "c", "g"]);
}
