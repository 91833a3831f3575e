//! Every public function of scaleset-core is called by production code: a decision that only
//! tests call is dead code, and a reconciler or the listener deciding inline beside it is the
//! drift this check exists to catch. "Production code" is the non-test source of scaleset-core
//! itself and of the crates that execute its decisions; `#[cfg(test)]` items, `tests.rs` files
//! and comments do not count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The crates whose source counts as production callers, scaleset-core first.
const PRODUCTION: [&str; 5] = [
    "scaleset-core/src",
    "k8s-reconcilers/src",
    "listener/src",
    "manager/src",
    "actions-client/src",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The file's code without its `#[cfg(test)]` items (found by brace matching) and comment
/// lines.
fn production_code(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "#[cfg(test)]" {
            out.push(lines[i]);
            i += 1;
            continue;
        }
        // Skip the item: up to a `;` before any `{`, or to the brace closing the first `{`.
        let mut depth = 0usize;
        let mut opened = false;
        i += 1;
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            for c in line.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            if (opened && depth == 0) || (!opened && line.trim_end().ends_with(';')) {
                break;
            }
        }
    }
    out.join("\n")
}

/// Whether `name` occurs in `text` as a whole identifier.
fn occurrences(text: &str, name: &str) -> usize {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name)
        .filter(|(at, _)| {
            let before = text[..*at].chars().next_back();
            let after = text[at + name.len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        })
        .count()
}

/// The names of the `pub fn`s (free functions and methods) defined in `code`.
fn public_functions(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| l.trim_start().strip_prefix("pub fn "))
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[test]
fn every_public_core_function_has_a_production_caller() -> anyhow::Result<()> {
    let root = testbed::workspace_root();
    let mut sources: BTreeMap<PathBuf, String> = BTreeMap::new();
    for dir in PRODUCTION {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files)?;
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            sources.insert(file, production_code(&text));
        }
    }
    let core = root.join(PRODUCTION[0]);
    let mut uncalled = Vec::new();
    for (file, code) in sources.iter().filter(|(f, _)| f.starts_with(&core)) {
        for name in public_functions(code) {
            let uses: usize = sources.values().map(|text| occurrences(text, &name)).sum();
            // One occurrence is the definition itself.
            if uses <= 1 {
                let file = file.strip_prefix(&root).unwrap_or(file);
                uncalled.push(format!("{}: {name}", file.display()));
            }
        }
    }
    anyhow::ensure!(
        uncalled.is_empty(),
        "public scaleset-core functions that no production code calls (wire each into the \
         reconciler or listener that decides it inline, or delete it):\n  {}",
        uncalled.join("\n  ")
    );
    Ok(())
}

#[test]
fn the_check_sees_a_function_only_tests_call() {
    let code = production_code(
        "#[cfg(test)]\nmod tests;\npub fn used() {}\npub fn unused() {}\n\
         fn caller() { used(); }\n// unused() in a comment\n#[cfg(test)]\n\
         fn helper() {\n    unused();\n}\nfn after() {}\n#[cfg(test)]\n\
         mod tests { fn t() { super::unused(); } }\n",
    );
    assert!(code.contains("fn after()"), "{code}");
    assert_eq!(public_functions(&code), ["used", "unused"]);
    assert_eq!(occurrences(&code, "used"), 2);
    assert_eq!(occurrences(&code, "unused"), 1);
}
