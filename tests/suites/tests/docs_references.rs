//! No comment or README depends on a document outside the repository: the developers' design
//! notes are not shipped, so the repository's `*.rs` and `*.md` files must not cite them, and
//! every link to a section of `docs/architecture.md` must name a heading that exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// File names of the design notes kept outside the repository. Spelled in pieces so that this
/// file does not match its own check.
const OUTSIDE_NOTES: [&str; 7] = [
    "controllers",
    "anchors",
    "listener",
    "actions-protocol",
    "charts",
    "rust-style",
    "testbed",
];

/// Other spellings that only make sense with the outside notes at hand.
fn outside_patterns() -> Vec<String> {
    let mut patterns: Vec<String> = OUTSIDE_NOTES.iter().map(|n| format!("{n}.md")).collect();
    patterns.push(format!("spec {}", '\u{a7}'));
    patterns.push(["/work", "/shared"].concat());
    patterns
}

const ARCHITECTURE: &str = "docs/architecture.md";

/// Every `*.rs` and `*.md` file of the repository, outside `target/` and `.git/`.
fn repository_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if name != ".git" && !name.starts_with("target") && name != "node_modules" {
                    dirs.push(path);
                }
            } else if kind.is_file() && (name.ends_with(".rs") || name.ends_with(".md")) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// GitHub's anchor for a heading: lowercase, spaces to '-', punctuation other than '-' and '_'
/// dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown document's headings (fenced code blocks skipped).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let hashes = trimmed.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && trimmed[hashes..].starts_with(' ') {
            anchors.insert(github_anchor(&trimmed[hashes..]));
        }
    }
    anchors
}

/// The anchors that follow `marker` in `text`.
fn linked_anchors<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    text.match_indices(marker)
        .map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn github_anchor_rule() {
    assert_eq!(
        github_anchor("EphemeralRunner lifecycle"),
        "ephemeralrunner-lifecycle"
    );
    assert_eq!(
        github_anchor("Names, hashes and `labels` (ARC)"),
        "names-hashes-and-labels-arc"
    );
    assert_eq!(github_anchor("GHES / ghe.com URLs"), "ghes--ghecom-urls");
    assert_eq!(
        github_anchor("tests/{testbed,emulator}"),
        "teststestbedemulator"
    );
}

#[test]
fn no_reference_to_outside_notes() {
    let root = testbed::workspace_root();
    let patterns = outside_patterns();
    let mut found = Vec::new();
    for file in repository_files(&root) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if patterns.iter().any(|p| line.contains(p.as_str())) {
                let shown = file.strip_prefix(&root).unwrap_or(&file);
                found.push(format!(
                    "{}:{}: {}",
                    shown.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} line(s) cite design notes that are not in the repository; point them to a \
         section of {ARCHITECTURE} or state the fact in place:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn architecture_links_name_existing_sections() {
    let root = testbed::workspace_root();
    let architecture = std::fs::read_to_string(root.join(ARCHITECTURE))
        .unwrap_or_else(|e| panic!("{ARCHITECTURE}: {e}"));
    let known = anchors(&architecture);
    // spelled in pieces so that this file's own text is not taken for a link
    let marker = ["architecture.md", "#"].concat();
    assert!(!known.is_empty(), "{ARCHITECTURE} has no headings");
    let mut broken = Vec::new();
    for file in repository_files(&root) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let shown = file.strip_prefix(&root).unwrap_or(&file).to_path_buf();
        let mut links = linked_anchors(&text, &marker);
        if shown == Path::new(ARCHITECTURE) {
            // links inside the document itself
            links.extend(linked_anchors(&text, "](#"));
        }
        for anchor in links {
            if !known.contains(anchor) {
                broken.push(format!("{}: #{anchor}", shown.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to sections {ARCHITECTURE} does not have:\n{}",
        broken.join("\n")
    );
}
