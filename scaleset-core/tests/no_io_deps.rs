//! The crate stays pure: its normal dependencies are only serde and thiserror.

#[test]
fn manifest_has_no_io_dependencies() {
    let manifest = include_str!("../Cargo.toml");
    let mut section = String::new();
    let mut deps = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let is_runtime = section == "dependencies"
            || section.starts_with("dependencies.")
            || (section.starts_with("target.") && section.ends_with(".dependencies"));
        if is_runtime && !line.is_empty() && !line.starts_with('#') {
            let name = line
                .split(['=', ' '])
                .next()
                .unwrap_or_default()
                .to_string();
            deps.push(name);
        }
        if section.starts_with("dependencies.") {
            deps.push(section.trim_start_matches("dependencies.").to_string());
        }
    }
    assert!(!deps.is_empty(), "no [dependencies] section parsed");
    for dep in &deps {
        assert!(
            dep == "serde" || dep == "thiserror",
            "scaleset-core must not depend on `{dep}`: decisions stay free of I/O, kube and tokio"
        );
    }
}
